/**
 * The publisher conformance suite against every broker on the machine whose harness lives in
 * test/helpers/brokers. Broker-specific behaviour is tested beside each publisher.
 */
import { describePublisher } from '../conformance/publisher.suite.js';
import { httpHarness } from '../helpers/brokers/http.js';
import { natsHarness } from '../helpers/brokers/nats.js';

describePublisher('nats jetstream', natsHarness);
describePublisher('http (webhook receiver)', httpHarness);
