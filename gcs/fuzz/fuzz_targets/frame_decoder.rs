//! Fuzzes the daemon's frame decoder: arbitrary bytes must give frames or typed errors,
//! never a panic, and every decoded frame must survive an encode/decode round trip.

#![no_main]

use bytes::BytesMut;
use conclave_gcs::wire::Frame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut buf = BytesMut::from(data);
    while let Ok(Some(frame)) = Frame::decode(&mut buf) {
        let bytes = frame.encode().to_vec();
        let mut again = BytesMut::from(&bytes[..]);
        assert_eq!(Frame::decode(&mut again), Ok(Some(frame)));
        assert!(again.is_empty());
    }
});
