/**
 * dptrain's message bus: one {@linkcode Transport} interface, implemented
 * over NATS and in process; per-run subjects; a local nats-server launcher.
 * See docs/wire.md.
 *
 * @module
 */

export { reportHandlerError, TransportError } from "./transport.ts";
export type {
  HandlerErrorCallback,
  MessageHandler,
  Subscription,
  Transport,
  TransportErrorCode,
  TransportErrorOptions,
  TransportLog,
  TransportLogEntry,
  TransportLogLevel,
} from "./transport.ts";

export {
  checkRunId,
  checkSubject,
  DEFAULT_SUBJECT_PREFIX,
  subjectMatches,
  subjects,
} from "./subjects.ts";
export type { RunSubjects } from "./subjects.ts";

export { connectNats, NATS_DEFAULTS } from "./nats_transport.ts";
export type { ConnectNatsOptions } from "./nats_transport.ts";

export {
  DEFAULT_MAX_PAYLOAD_BYTES,
  InProcessHub,
} from "./in_process_transport.ts";
export type {
  InProcessConnectOptions,
  InProcessHubOptions,
} from "./in_process_transport.ts";

export {
  NATS_SERVER_DEFAULTS,
  NatsServerError,
  startNatsServer,
} from "./nats_server.ts";
export type { NatsServer, NatsServerOptions } from "./nats_server.ts";

export { renderNatsServerConfig } from "./nats_server_config.ts";
export type {
  NatsNkeyUser,
  NatsPasswordUser,
  NatsPermissions,
  NatsServerAuthorization,
  NatsServerConfig,
  NatsServerOperator,
  NatsServerTls,
  NatsServerUser,
} from "./nats_server_config.ts";

export {
  describeNatsAccess,
  loadNatsAccess,
  NATS_ACCESS_ENV,
  NatsAccessError,
  natsConnectOptions,
} from "./nats_auth.ts";
export type {
  LoadNatsAccessOptions,
  NatsAccess,
  NatsAccessSources,
  NatsAuth,
  NatsTls,
} from "./nats_auth.ts";

export {
  generateRunCredentials,
  psPermissions,
  runAuthorization,
  workerPermissions,
} from "./nats_run_credentials.ts";
export type { RunCredentials, RunUser } from "./nats_run_credentials.ts";
