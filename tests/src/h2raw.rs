//! HTTP/2 frames as raw bytes, for attacks no well-behaved client library would send.

/// A frame: 24-bit length, type, flags, stream id, payload.
pub fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
    let len = u32::try_from(payload.len()).unwrap().to_be_bytes();
    let mut out = vec![len[1], len[2], len[3], kind, flags];
    out.extend_from_slice(&stream.to_be_bytes());
    out.extend_from_slice(payload);
    out
}

/// The client preface and an empty SETTINGS frame.
pub fn preface() -> Vec<u8> {
    let mut out = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".to_vec();
    out.extend(frame(0x4, 0, 0, &[]));
    out
}

/// HPACK for `GET https://{host}/`: `:method GET`, `:scheme https`, `:path /` from the static
/// table, `:authority` as a literal.
pub fn get_block(host: &str) -> Vec<u8> {
    let mut block = vec![0x82, 0x87, 0x84, 0x01, u8::try_from(host.len()).unwrap()];
    block.extend_from_slice(host.as_bytes());
    block
}
