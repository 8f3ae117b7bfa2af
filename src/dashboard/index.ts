/** `outbox/dashboard`: the web dashboard's request handler for your own server, or its own server. */
export {
  type DashboardHandler,
  type DashboardOptions,
  dashboardHandler,
  generateToken,
  MIN_TOKEN_LENGTH,
} from './handler.js';
export {
  type DashboardServer,
  type DashboardServerOptions,
  DEFAULT_DASHBOARD_HOST,
  DEFAULT_DASHBOARD_PORT,
  startDashboard,
} from './server.js';
