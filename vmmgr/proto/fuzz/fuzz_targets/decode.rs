//! Feeds arbitrary bytes to every decoder a peer can reach: whole frames,
//! stream reads, and bare headers. None may panic; whatever decodes must
//! encode again to a frame that decodes to the same value.
#![no_main]

use libfuzzer_sys::fuzz_target;
use proto::{Kind, Request, Response};

fuzz_target!(|data: &[u8]| {
    if let Ok((kind, req)) = proto::decode::<Request>(data) {
        let mut buf = [0u8; proto::HEADER_LEN + proto::MAX_PAYLOAD];
        let n = proto::encode(kind, &req, &mut buf).expect("a decoded request re-encodes");
        let (_, back): (Kind, Request) = proto::decode(&buf[..n]).expect("and decodes again");
        assert_eq!(back, req);
    }
    let _ = proto::decode::<Response>(data);
    // The same bytes as a payload inside a well-formed envelope, so the
    // message decoders are reached past the checksum.
    if data.len() <= proto::MAX_PAYLOAD {
        let mut frame = Vec::with_capacity(proto::HEADER_LEN + data.len());
        frame.extend_from_slice(&proto::MAGIC);
        frame.push(proto::VERSION);
        frame.push(Kind::Request as u8);
        frame.extend_from_slice(&(data.len() as u32).to_le_bytes());
        frame.extend_from_slice(&proto::crc32(data).to_le_bytes());
        frame.extend_from_slice(data);
        if let Ok((_, req)) = proto::decode::<Request>(&frame) {
            let mut buf = [0u8; proto::HEADER_LEN + proto::MAX_PAYLOAD];
            let n = proto::encode(Kind::Request, &req, &mut buf).expect("re-encodes");
            assert_eq!(proto::decode::<Request>(&buf[..n]).map(|(_, r)| r), Ok(req));
        }
        let _ = proto::decode::<Response>(&frame);
        // vmmgr <-> vesetup messages.
        frame[3] = Kind::Setup as u8;
        let _ = proto::decode::<proto::SetupSpec>(&frame);
        let _ = proto::decode::<proto::SetupReply>(&frame);
    }
    let mut stream = data;
    let mut buf = [0u8; proto::HEADER_LEN + proto::MAX_PAYLOAD];
    for _ in 0..4 {
        if proto::read_frame::<_, Request>(&mut stream, &mut buf).is_err() {
            break;
        }
    }
    if let Ok(head) = <&[u8; proto::HEADER_LEN]>::try_from(data.get(..proto::HEADER_LEN).unwrap_or(&[])) {
        let _ = proto::check_header(head);
    }
});
