/** The shaper service: fair sharing and per-guest caps on the guest uplink. docs/services/shaper.md. */
export type { ShaperOptions } from './options.js';
export {
  followPortal,
  type PortalCaps,
  type PortalFollower,
  type PortalShaperOptions,
  shapePortal,
} from './portal.js';
export { installShaperService, type ShapedGuest, type ShaperService } from './service.js';
export { shaperTable } from './table.js';
