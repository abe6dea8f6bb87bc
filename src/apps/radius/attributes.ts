/**
 * The RADIUS attributes this app sends and reads (RFC 2865, 2866, 2869, 3576/5176, 3579) and the
 * two vendors' captive-portal attributes (ChilliSpot/CoovaChilli 14559, WISPr 14122). Numbers,
 * not a dictionary file: the app needs about forty of them, and a fixed table is what the fuzz
 * tests can cover. docs/apps/radius.md has the mapping table.
 */

/** Packet codes. */
export const Code = {
  AccessRequest: 1,
  AccessAccept: 2,
  AccessReject: 3,
  AccountingRequest: 4,
  AccountingResponse: 5,
  AccessChallenge: 11,
  StatusServer: 12,
  DisconnectRequest: 40,
  DisconnectAck: 41,
  DisconnectNak: 42,
  CoaRequest: 43,
  CoaAck: 44,
  CoaNak: 45,
} as const;

export const CODE_NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(Code).map(([k, v]) => [v, k.replace(/([a-z])([A-Z])/g, '$1-$2').replace('Coa', 'CoA')]),
);

/** Standard attribute types. */
export const A = {
  UserName: 1,
  UserPassword: 2,
  ChapPassword: 3,
  NasIpAddress: 4,
  NasPort: 5,
  ServiceType: 6,
  FramedIpAddress: 8,
  ReplyMessage: 18,
  State: 24,
  Class: 25,
  VendorSpecific: 26,
  SessionTimeout: 27,
  IdleTimeout: 28,
  TerminationAction: 29,
  CalledStationId: 30,
  CallingStationId: 31,
  NasIdentifier: 32,
  ProxyState: 33,
  AcctStatusType: 40,
  AcctDelayTime: 41,
  AcctInputOctets: 42,
  AcctOutputOctets: 43,
  AcctSessionId: 44,
  AcctAuthentic: 45,
  AcctSessionTime: 46,
  AcctInputPackets: 47,
  AcctOutputPackets: 48,
  AcctTerminateCause: 49,
  AcctMultiSessionId: 50,
  AcctInputGigawords: 52,
  AcctOutputGigawords: 53,
  EventTimestamp: 55,
  ChapChallenge: 60,
  NasPortType: 61,
  MessageAuthenticator: 80,
  AcctInterimInterval: 85,
  NasPortId: 87,
  ErrorCause: 101,
} as const;

export const VENDOR = { ChilliSpot: 14559, WISPr: 14122 } as const;

/** ChilliSpot / CoovaChilli vendor attributes (14559). Gigawords are CoovaChilli's (21-23). */
export const CHILLI = {
  MaxInputOctets: 1,
  MaxOutputOctets: 2,
  MaxTotalOctets: 3,
  BandwidthMaxUp: 4,
  BandwidthMaxDown: 5,
  MaxInputGigawords: 21,
  MaxOutputGigawords: 22,
  MaxTotalGigawords: 23,
} as const;

/** WISPr vendor attributes (14122). */
export const WISPR = { BandwidthMaxUp: 7, BandwidthMaxDown: 8 } as const;

export const AcctStatus = { Start: 1, Stop: 2, InterimUpdate: 3, AccountingOn: 7, AccountingOff: 8 } as const;

/** RFC 2866 §5.10 Acct-Terminate-Cause values used here. */
export const TerminateCause = {
  UserRequest: 1,
  LostCarrier: 2,
  LostService: 3,
  IdleTimeout: 4,
  SessionTimeout: 5,
  AdminReset: 6,
  AdminReboot: 7,
  NasRequest: 10,
  NasReboot: 11,
} as const;

/** RFC 5176 §3.5 Error-Cause values used by the DAE server. */
export const ErrorCause = {
  UnsupportedAttribute: 401,
  MissingAttribute: 402,
  NasIdentificationMismatch: 403,
  InvalidRequest: 404,
  UnsupportedService: 405,
  AdministrativelyProhibited: 501,
  SessionContextNotFound: 503,
  ResourcesUnavailable: 506,
} as const;

export const ServiceType = { Login: 1, AuthorizeOnly: 17 } as const;
/** NAS-Port-Type Wireless-802.11 (19), what hotspots send; Ethernet is 15. */
export const NasPortType = { Ethernet: 15, Wireless80211: 19 } as const;

const NAMES: Readonly<Record<number, string>> = Object.fromEntries(
  Object.entries(A).map(([k, v]) => [v, k.replace(/([a-z])([A-Z])/g, '$1-$2')]),
);

/** A readable name for logs and Error-Cause reports: `Session-Timeout`, `26/14559/3`, `attr-200`. */
export function attrName(type: number, vendor?: number): string {
  if (vendor !== undefined) return `${A.VendorSpecific}/${vendor}/${type}`;
  return NAMES[type] ?? `attr-${type}`;
}
