export { hostnameOf } from './request.js';
export type { HttpServerOptions } from './server.js';
export { type HttpService, type HttpServiceOptions, installHttpService } from './service.js';
export { HTTP_NEW, HTTP_SERVICE_ERROR, HTTP_TABLE, type HttpMailboxSpec } from './table.js';
