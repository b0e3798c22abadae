//! The reasons an origin (or the server, for origin failures) gives for a refusal, by name,
//! and the MQTT codes each becomes: CONNACK (5.0 reason code, 3.1.1 return code), SUBACK
//! (5.0; 3.1.1 has only [`SUBACK_V3_FAILURE`]) and PUBACK/PUBREC (5.0; 3.1.1 has none: a denied
//! publish is acknowledged and dropped).
//!
//! | name | CONNACK v5 / v3 | SUBACK v5 | PUBACK v5 |
//! |---|---|---|---|
//! | `bad-credentials` | 0x86 / 4 | | |
//! | `not-authorized` | 0x87 / 5 | 0x87 | 0x87 |
//! | `banned` | 0x8A / 5 | | |
//! | `client-id-invalid` | 0x85 / 2 | | |
//! | `server-busy` | 0x89 / 3 | | |
//! | `server-unavailable` | 0x88 / 3 | | |
//! | `quota-exceeded` | 0x97 / 5 | 0x97 | 0x97 |
//! | `topic-invalid` | | 0x8F | 0x90 |
//! | `payload-invalid` | | | 0x99 |
//! | `shared-not-supported` | | 0x9E | |
//! | `wildcard-not-supported` | | 0xA2 | |
//!
//! A blank cell is a reason the origin may not give for that event ([`Reason::allowed_for`];
//! the answer parser refuses it). The code functions are total nonetheless: a reason outside
//! its packet's column gets that packet's generic failure, v5 0x80 (Unspecified error) or v3
//! CONNACK 3 (Server unavailable). That is also what the server sends when the origin fails
//! (`server-unavailable`: CONNACK 0x88 / 3, SUBACK and PUBACK 0x80). Every code was checked
//! against the MQTT 5.0 reason-code table (§2.4) and 3.1.1's CONNACK return codes (§3.2.2.3);
//! the tests check each against `mqtt-proto`'s per-packet code enums.

use super::EventKind;

/// The one failure code of a 3.1.1 SUBACK entry.
pub const SUBACK_V3_FAILURE: u8 = 0x80;

/// v5 "Unspecified error", valid in CONNACK, SUBACK and PUBACK.
const V5_UNSPECIFIED: u8 = 0x80;
/// v3 CONNACK "Server unavailable".
const V3_SERVER_UNAVAILABLE: u8 = 3;

/// A refusal reason, named in answers as [`Reason::name`] gives it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Reason {
    /// `bad-credentials`: wrong user name or password (connect).
    BadCredentials,
    /// `not-authorized`: not allowed (connect, subscribe, publish); the default of a deny.
    NotAuthorized,
    /// `banned`: this device or user is banned (connect).
    Banned,
    /// `client-id-invalid`: the client id is not acceptable (connect).
    ClientIdInvalid,
    /// `server-busy`: try again later (connect).
    ServerBusy,
    /// `server-unavailable`: the service is down (connect); also what an origin failure is.
    ServerUnavailable,
    /// `quota-exceeded`: a quota of this device or user is used up (all three).
    QuotaExceeded,
    /// `topic-invalid`: the filter (subscribe) or topic name (publish) is not acceptable.
    TopicInvalid,
    /// `payload-invalid`: the payload is not in the expected format (publish).
    PayloadInvalid,
    /// `shared-not-supported`: no `$share/` subscriptions here (subscribe).
    SharedNotSupported,
    /// `wildcard-not-supported`: no wildcard filters here (subscribe).
    WildcardNotSupported,
}

impl Reason {
    /// Every reason.
    pub const ALL: [Reason; 11] = [
        Reason::BadCredentials,
        Reason::NotAuthorized,
        Reason::Banned,
        Reason::ClientIdInvalid,
        Reason::ServerBusy,
        Reason::ServerUnavailable,
        Reason::QuotaExceeded,
        Reason::TopicInvalid,
        Reason::PayloadInvalid,
        Reason::SharedNotSupported,
        Reason::WildcardNotSupported,
    ];

    /// The name used in answers, e.g. `"not-authorized"`.
    pub const fn name(self) -> &'static str {
        match self {
            Reason::BadCredentials => "bad-credentials",
            Reason::NotAuthorized => "not-authorized",
            Reason::Banned => "banned",
            Reason::ClientIdInvalid => "client-id-invalid",
            Reason::ServerBusy => "server-busy",
            Reason::ServerUnavailable => "server-unavailable",
            Reason::QuotaExceeded => "quota-exceeded",
            Reason::TopicInvalid => "topic-invalid",
            Reason::PayloadInvalid => "payload-invalid",
            Reason::SharedNotSupported => "shared-not-supported",
            Reason::WildcardNotSupported => "wildcard-not-supported",
        }
    }

    /// The reason with this name (exact, case-sensitive), `None` for an unknown one.
    pub fn from_name(name: &str) -> Option<Reason> {
        Reason::ALL.into_iter().find(|r| r.name() == name)
    }

    /// Whether an origin may give this reason in a result for `kind` (a non-blank cell in
    /// the module's table). Notifications take none.
    pub const fn allowed_for(self, kind: &EventKind<'_>) -> bool {
        match kind {
            EventKind::Connect => self.connack_v5_code().is_some(),
            EventKind::Subscribe(_) => self.suback_v5_code().is_some(),
            EventKind::Publish => self.puback_v5_code().is_some(),
            EventKind::Unsubscribe | EventKind::Disconnect => false,
        }
    }

    /// The MQTT 5.0 CONNACK reason code; 0x80 for a reason that is not a connect's.
    pub const fn connack_v5(self) -> u8 {
        match self.connack_v5_code() {
            Some(code) => code,
            None => V5_UNSPECIFIED,
        }
    }

    /// The MQTT 3.1.1 CONNACK return code; 3 for a reason that is not a connect's.
    pub const fn connack_v3(self) -> u8 {
        match self {
            Reason::BadCredentials => 4,
            Reason::NotAuthorized | Reason::Banned | Reason::QuotaExceeded => 5,
            Reason::ClientIdInvalid => 2,
            _ => V3_SERVER_UNAVAILABLE,
        }
    }

    /// The MQTT 5.0 SUBACK reason code; 0x80 for a reason that is not a subscribe's.
    /// (A 3.1.1 SUBACK refusal is always [`SUBACK_V3_FAILURE`].)
    pub const fn suback_v5(self) -> u8 {
        match self.suback_v5_code() {
            Some(code) => code,
            None => V5_UNSPECIFIED,
        }
    }

    /// The MQTT 5.0 PUBACK (and PUBREC, for QoS 2) reason code; 0x80 for a reason that is
    /// not a publish's.
    pub const fn puback_v5(self) -> u8 {
        match self.puback_v5_code() {
            Some(code) => code,
            None => V5_UNSPECIFIED,
        }
    }

    const fn connack_v5_code(self) -> Option<u8> {
        Some(match self {
            Reason::BadCredentials => 0x86,
            Reason::NotAuthorized => 0x87,
            Reason::Banned => 0x8A,
            Reason::ClientIdInvalid => 0x85,
            Reason::ServerBusy => 0x89,
            Reason::ServerUnavailable => 0x88,
            Reason::QuotaExceeded => 0x97,
            _ => return None,
        })
    }

    const fn suback_v5_code(self) -> Option<u8> {
        Some(match self {
            Reason::NotAuthorized => 0x87,
            Reason::QuotaExceeded => 0x97,
            Reason::TopicInvalid => 0x8F,
            Reason::SharedNotSupported => 0x9E,
            Reason::WildcardNotSupported => 0xA2,
            _ => return None,
        })
    }

    const fn puback_v5_code(self) -> Option<u8> {
        Some(match self {
            Reason::NotAuthorized => 0x87,
            Reason::QuotaExceeded => 0x97,
            Reason::TopicInvalid => 0x90,
            Reason::PayloadInvalid => 0x99,
            _ => return None,
        })
    }
}

impl std::fmt::Display for Reason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mqtt_proto::{v3, v5};

    #[test]
    fn names_round_trip_and_are_distinct() {
        for r in Reason::ALL {
            assert_eq!(Reason::from_name(r.name()), Some(r));
            assert_eq!(r.to_string(), r.name());
        }
        let mut names: Vec<_> = Reason::ALL.iter().map(|r| r.name()).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Reason::ALL.len());
        for unknown in [
            "",
            "Not-Authorized",
            "not_authorized",
            "denied",
            "not-authorized ",
        ] {
            assert_eq!(Reason::from_name(unknown), None, "{unknown:?}");
        }
    }

    #[test]
    fn the_documented_table() {
        use Reason::*;
        // name, CONNACK v5, CONNACK v3, SUBACK v5, PUBACK v5 (None = not allowed there)
        type Row = (Reason, Option<u8>, u8, Option<u8>, Option<u8>);
        let table: [Row; 11] = [
            (BadCredentials, Some(0x86), 4, None, None),
            (NotAuthorized, Some(0x87), 5, Some(0x87), Some(0x87)),
            (Banned, Some(0x8A), 5, None, None),
            (ClientIdInvalid, Some(0x85), 2, None, None),
            (ServerBusy, Some(0x89), 3, None, None),
            (ServerUnavailable, Some(0x88), 3, None, None),
            (QuotaExceeded, Some(0x97), 5, Some(0x97), Some(0x97)),
            (TopicInvalid, None, 3, Some(0x8F), Some(0x90)),
            (PayloadInvalid, None, 3, None, Some(0x99)),
            (SharedNotSupported, None, 3, Some(0x9E), None),
            (WildcardNotSupported, None, 3, Some(0xA2), None),
        ];
        assert_eq!(table.map(|row| row.0), Reason::ALL);
        for (r, connack5, connack3, suback5, puback5) in table {
            assert_eq!(
                r.allowed_for(&EventKind::Connect),
                connack5.is_some(),
                "{r}"
            );
            assert_eq!(r.allowed_for(&EventKind::Subscribe(&[])), suback5.is_some());
            assert_eq!(r.allowed_for(&EventKind::Publish), puback5.is_some());
            assert!(!r.allowed_for(&EventKind::Unsubscribe));
            assert!(!r.allowed_for(&EventKind::Disconnect));
            assert_eq!(r.connack_v5(), connack5.unwrap_or(0x80), "{r}");
            assert_eq!(r.connack_v3(), connack3, "{r}");
            assert_eq!(r.suback_v5(), suback5.unwrap_or(0x80), "{r}");
            assert_eq!(r.puback_v5(), puback5.unwrap_or(0x80), "{r}");
        }
    }

    /// Each code means what its name says, by the codec crate's names for the codes.
    #[test]
    fn codes_match_the_crates_names() {
        use v3::ConnectReturnCode as C3;
        use v5::ConnectReasonCode as C5;
        use v5::PubackReasonCode as P5;
        use v5::SubscribeReasonCode as S5;
        let connack = [
            (
                Reason::BadCredentials,
                C5::BadUserNameOrPassword,
                C3::BadUserNameOrPassword,
            ),
            (Reason::NotAuthorized, C5::NotAuthorized, C3::NotAuthorized),
            (Reason::Banned, C5::Banned, C3::NotAuthorized),
            (
                Reason::ClientIdInvalid,
                C5::ClientIdentifierNotValid,
                C3::IdentifierRejected,
            ),
            (Reason::ServerBusy, C5::ServerBusy, C3::ServerUnavailable),
            (
                Reason::ServerUnavailable,
                C5::ServerUnavailable,
                C3::ServerUnavailable,
            ),
            (Reason::QuotaExceeded, C5::QuotaExceeded, C3::NotAuthorized),
        ];
        for (r, v5, v3) in connack {
            assert_eq!(r.connack_v5(), v5 as u8, "{r}");
            assert_eq!(r.connack_v3(), v3 as u8, "{r}");
        }
        let suback = [
            (Reason::NotAuthorized, S5::NotAuthorized),
            (Reason::QuotaExceeded, S5::QuotaExceeded),
            (Reason::TopicInvalid, S5::TopicFilterInvalid),
            (
                Reason::SharedNotSupported,
                S5::SharedSubscriptionNotSupported,
            ),
            (
                Reason::WildcardNotSupported,
                S5::WildcardSubscriptionsNotSupported,
            ),
        ];
        for (r, code) in suback {
            assert_eq!(r.suback_v5(), code as u8, "{r}");
        }
        let puback = [
            (Reason::NotAuthorized, P5::NotAuthorized),
            (Reason::QuotaExceeded, P5::QuotaExceeded),
            (Reason::TopicInvalid, P5::TopicNameInvalid),
            (Reason::PayloadInvalid, P5::PayloadFormatInvalid),
        ];
        for (r, code) in puback {
            assert_eq!(r.puback_v5(), code as u8, "{r}");
        }
        // the generic failures
        assert_eq!(V5_UNSPECIFIED, C5::UnspecifiedError as u8);
        assert_eq!(V5_UNSPECIFIED, S5::UnspecifiedError as u8);
        assert_eq!(V5_UNSPECIFIED, P5::UnspecifiedError as u8);
        assert_eq!(V3_SERVER_UNAVAILABLE, C3::ServerUnavailable as u8);
    }

    /// Every code is one the packet may carry, by the codec crate's own per-packet enums, and
    /// a failure (never success or a granted QoS).
    #[test]
    fn codes_are_valid_failures_of_their_packets() {
        for r in Reason::ALL {
            let c = r.connack_v5();
            assert!(c >= 0x80, "{r}");
            let code = v5::ConnectReasonCode::from_u8(c).expect("a CONNACK code");
            assert_eq!(code as u8, c);
            let c = r.connack_v3();
            assert!(matches!(
                v3::ConnectReturnCode::from_u8(c).expect("a v3 CONNACK return code"),
                v3::ConnectReturnCode::IdentifierRejected
                    | v3::ConnectReturnCode::ServerUnavailable
                    | v3::ConnectReturnCode::BadUserNameOrPassword
                    | v3::ConnectReturnCode::NotAuthorized
            ));
            let c = r.suback_v5();
            assert!(c >= 0x80, "{r}");
            assert_eq!(
                v5::SubscribeReasonCode::from_u8(c).map(|x| x as u8),
                Some(c)
            );
            let c = r.puback_v5();
            assert!(c >= 0x80, "{r}");
            assert_eq!(v5::PubackReasonCode::from_u8(c).map(|x| x as u8), Some(c));
            assert_eq!(v5::PubrecReasonCode::from_u8(c).map(|x| x as u8), Some(c));
        }
        assert_eq!(
            v3::SubscribeReturnCode::from_u8(SUBACK_V3_FAILURE).ok(),
            Some(v3::SubscribeReturnCode::Failure)
        );
    }
}
