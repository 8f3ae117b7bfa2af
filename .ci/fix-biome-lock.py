# Adds the lock entries for @biomejs/biome's other-platform binaries, which this machine's registry
# cannot serve (404), so `npm install` leaves them out and `npm ci` then refuses the lock
# ("Missing: @biomejs/cli-darwin-arm64@ from lock file"). npm ci skips them by os/cpu/libc.
# Usage: python3 .ci/fix-biome-lock.py package-lock.json (after any change to the lock)
import json, sys
p = sys.argv[1]
lock = json.load(open(p))
pk = lock['packages']
version = pk['node_modules/@biomejs/biome']['version']
spec = {'android-arm64': ('android', 'arm64', None), 'android-x64': ('android', 'x64', None),
        'darwin-arm64': ('darwin', 'arm64', None), 'darwin-x64': ('darwin', 'x64', None),
        'linux-arm64-musl': ('linux', 'arm64', 'musl'), 'linux-x64-musl': ('linux', 'x64', 'musl'),
        'win32-arm64': ('win32', 'arm64', None), 'win32-x64': ('win32', 'x64', None)}
for name, (os_, cpu, libc) in spec.items():
    key = f'node_modules/@biomejs/cli-{name}'
    if key in pk: continue
    e = {'version': version, 'cpu': [cpu], 'dev': True}
    if libc: e['libc'] = [libc]
    e.update({'license': 'MIT OR Apache-2.0', 'optional': True, 'os': [os_], 'engines': {'node': '>=14.21.3'}})
    pk[key] = e
lock['packages'] = dict(sorted(pk.items(), key=lambda kv: (kv[0] != '', kv[0])))
open(p, 'w').write(json.dumps(lock, indent=2) + '\n')
