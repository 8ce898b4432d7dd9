"""Packet helpers shared by the test bed's Python peers (hostile.py, xdp_accept.py, spray.py,
flood.py): the Internet checksum and a plain IPv4 header. Imported from the scripts'
directory, which python3 puts first on sys.path when it runs one of them."""
import struct


def csum(b):
    """The Internet checksum (RFC 1071) of `b`."""
    if len(b) % 2:
        b += b"\0"
    s = sum(struct.unpack(f"!{len(b) // 2}H", b))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return (~s) & 0xFFFF


def ipv4(src, dst, proto, payload, ttl=64):
    """An IPv4 packet from `src` to `dst` (4 bytes each) carrying `payload`, no options,
    identification 0, its header checksum set."""
    h = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 0, 0, ttl, proto, 0, src, dst)
    return h[:10] + struct.pack("!H", csum(h)) + h[12:] + payload
