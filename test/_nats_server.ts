/**
 * Test helper: a real nats-server on a free loopback port. Re-exports the
 * launcher's `startNatsServer` so tests and `deno task demo` start the
 * server the same way.
 *
 * @module
 */

export {
  NatsServerError,
  startNatsServer,
} from "../src/transport/nats_server.ts";
export type {
  NatsServer,
  NatsServerOptions,
} from "../src/transport/nats_server.ts";
