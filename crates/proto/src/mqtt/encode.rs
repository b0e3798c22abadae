//! Packet encoding for what the server sends (CONNACK, SUBACK, UNSUBACK, PUBACK, PINGRESP,
//! DISCONNECT, ...), through the crate's own encoder. The bytes come back as the crate's
//! `VarBytes`: a fixed array for ACKs and PINGRESP, a `Vec` for the rest. PUBLISH on the fan-out
//! path is not built here (docs/mqtt-design.md §2.4 writes its head by hand). One crate bug is
//! corrected here: a v3 SUBACK failure is written as 0x80, not the crate's 0x03.

use mqtt_proto::{v3, v5, VarBytes};

use super::decode::{MqttError, Packet};

/// Encodes one packet, header included, ready to write.
pub fn encode(packet: &Packet) -> Result<VarBytes, MqttError> {
    match packet {
        Packet::V3(v3::Packet::Suback(s)) => {
            // the crate writes v3 `Failure` as 0x03 (its enum discriminant), not 0x80: the
            // return codes are the last bytes, and 0x03 is never a valid one
            let mut out = v3::Packet::Suback(s.clone()).encode()?.as_ref().to_vec();
            let codes = out.len().saturating_sub(s.topics.len());
            for code in &mut out[codes..] {
                if *code == 0x03 {
                    *code = 0x80;
                }
            }
            Ok(VarBytes::Dynamic(out))
        }
        Packet::V3(p) => Ok(p.encode()?),
        Packet::V5(p) => p
            .encode()
            .map_err(|e| MqttError::V5(v5::ErrorV5::Common(e))),
    }
}

#[cfg(test)]
mod tests {
    use mqtt_proto::Pid;

    use super::*;
    use crate::mqtt::{decode, scan, Scan, Version};

    fn pid(n: u16) -> Pid {
        Pid::try_from(n).unwrap()
    }

    /// Encodes, then frames and decodes again: the same packet comes back.
    fn back(version: Version, p: Packet) -> Vec<u8> {
        let wire = encode(&p).unwrap();
        let wire = wire.as_ref();
        let Ok(Scan::Frame(f)) = scan(wire, 1 << 20) else {
            panic!("no frame");
        };
        assert_eq!(f.total_len(), wire.len());
        let body = &wire[usize::from(f.header_len)..];
        assert_eq!(decode(version, f, body), Ok(p));
        wire.to_vec()
    }

    #[test]
    fn v3_server_packets() {
        let connack = v3::Connack::new(false, v3::ConnectReturnCode::Accepted);
        assert_eq!(
            back(Version::V3, Packet::V3(connack.into())),
            [0x20, 0x02, 0x00, 0x00]
        );
        let refused = v3::Connack::new(false, v3::ConnectReturnCode::UnacceptableProtocolVersion);
        assert_eq!(
            back(Version::V3, Packet::V3(refused.into())),
            [0x20, 0x02, 0x00, 0x01]
        );
        // the crate alone would write the failure code as 0x03; checked as bytes, since this
        // crate's SUBACK decoder is the client's business
        let suback = v3::Suback::new(
            pid(5),
            vec![
                v3::SubscribeReturnCode::MaxLevel1,
                v3::SubscribeReturnCode::Failure,
            ],
        );
        assert_eq!(
            encode(&Packet::V3(suback.into())).unwrap().as_ref(),
            [0x90, 0x04, 0x00, 0x05, 0x01, 0x80]
        );
        let suback = v3::Suback::new(pid(5), vec![v3::SubscribeReturnCode::MaxLevel0]);
        assert_eq!(
            back(Version::V3, Packet::V3(suback.into())),
            [0x90, 0x03, 0x00, 0x05, 0x00]
        );
        assert_eq!(
            back(Version::V3, Packet::V3(v3::Packet::Unsuback(pid(6)))),
            [0xB0, 0x02, 0x00, 0x06]
        );
        assert_eq!(
            back(Version::V3, Packet::V3(v3::Packet::Puback(pid(7)))),
            [0x40, 0x02, 0x00, 0x07]
        );
        assert_eq!(
            back(Version::V3, Packet::V3(v3::Packet::Pingresp)),
            [0xD0, 0x00]
        );
    }

    #[test]
    fn v5_server_packets() {
        let mut connack = v5::Connack::new(true, v5::ConnectReasonCode::Success);
        connack.properties.max_qos = Some(mqtt_proto::QoS::Level1);
        connack.properties.topic_alias_max = Some(0);
        back(Version::V5, Packet::V5(connack.into()));
        let suback = v5::Suback::new(
            pid(5),
            vec![
                v5::SubscribeReasonCode::GrantedQoS1,
                v5::SubscribeReasonCode::NotAuthorized,
            ],
        );
        back(Version::V5, Packet::V5(suback.into()));
        let unsuback = v5::Unsuback::new(pid(6), vec![v5::UnsubscribeReasonCode::Success]);
        back(Version::V5, Packet::V5(unsuback.into()));
        assert_eq!(
            back(
                Version::V5,
                Packet::V5(v5::Puback::new_success(pid(7)).into())
            ),
            [0x40, 0x02, 0x00, 0x07]
        );
        assert_eq!(
            back(Version::V5, Packet::V5(v5::Packet::Pingresp)),
            [0xD0, 0x00]
        );
        let too_large = v5::Disconnect::new(v5::DisconnectReasonCode::PacketTooLarge);
        assert_eq!(
            back(Version::V5, Packet::V5(too_large.into())),
            [0xE0, 0x01, 0x95]
        );
    }
}
