//! Reading pcap and pcapng files record by record, with byte offsets for every error.
//!
//! The file is read in chunks into a buffer and each record is framed here before pcap-file
//! parses it, so that a record length is checked against a limit before any data is buffered for
//! it (a corrupt length never makes the reader swallow the file) and every error names the byte
//! offset of the record that broke the read.
//!
//! pcap: pcap-file's `PcapHeader` and `RawPcapPacket`. Its `PcapPacket` is not used because it
//! rejects `orig_len > snaplen`, which is exactly what a packet cut by the snap length looks like.
//!
//! pcapng: pcap-file's `PcapNgParser`. The interfaces are tracked here, because pcap-file returns
//! an Enhanced Packet Block's timestamp in raw units: it is converted with the packet's own
//! interface's `if_tsresol` and `if_tsoffset`.

use std::fmt;
use std::io::{self, Read};
use std::time::Duration;

use byteorder_free::{be32, le32};
use flowtable::Timestamp;
use pcap_file::pcap::{PcapHeader, RawPcapPacket};
use pcap_file::pcapng::blocks::interface_description::{InterfaceDescriptionBlock, InterfaceDescriptionOption};
use pcap_file::pcapng::{Block, PcapNgParser};
use pcap_file::{Endianness, TsResolution};

use crate::decode::LinkType;

/// The largest packet record accepted (Wireshark's limit for ordinary link types).
pub const MAX_PACKET: usize = 262_144;
/// The largest pcapng block accepted.
pub const MAX_BLOCK: usize = 16 * 1024 * 1024;
const CHUNK: usize = 256 * 1024;

/// Why the read of a capture stopped before its end.
#[derive(Debug)]
pub struct ReadError {
    /// Byte offset, from the start of the file, of the record (or header) that could not be read.
    pub offset: u64,
    /// What was wrong there.
    pub message: String,
}

impl fmt::Display for ReadError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "broken capture at byte offset {}: {}", self.offset, self.message)
    }
}

impl std::error::Error for ReadError {}

/// One packet record, borrowed from the reader's buffer.
#[derive(Debug)]
pub struct Record<'a> {
    /// Capture timestamp.
    pub ts: Timestamp,
    /// Length on the wire (`orig_len`), what tshark calls `frame.len`.
    pub wire_len: u32,
    /// The packet's own link type (its interface's, in pcapng).
    pub link: LinkType,
    /// The captured bytes (maybe fewer than `wire_len`).
    pub data: &'a [u8],
}

/// What [`CaptureReader::next_record`] found.
#[derive(Debug)]
pub enum Next<'a> {
    /// A packet.
    Packet(Record<'a>),
    /// A packet record whose contents are invalid (counted as malformed); the read goes on.
    Skipped(&'static str),
    /// A record that is not a packet (pcapng interface, statistics, name blocks...), or a
    /// non-packet block whose contents are invalid (its framing was sound, so the read goes on).
    Other,
    /// The end of the file.
    End,
}

#[derive(Clone, Debug)]
struct Interface {
    link: LinkType,
    /// Timestamp units per second (`if_tsresol`, default 10^6).
    units_per_sec: u64,
    /// Seconds added to every timestamp (`if_tsoffset`).
    offset_secs: u64,
}

impl Interface {
    fn from_idb(idb: &InterfaceDescriptionBlock<'_>) -> Interface {
        let mut units_per_sec = 1_000_000u64;
        let mut offset_secs = 0;
        for opt in &idb.options {
            match opt {
                InterfaceDescriptionOption::IfTsResol(r) => {
                    let exp = u32::from(r & 0x7F);
                    units_per_sec = if r & 0x80 == 0 { 10u64.checked_pow(exp) } else { 2u64.checked_pow(exp) }
                        .unwrap_or(u64::MAX)
                        .max(1);
                }
                InterfaceDescriptionOption::IfTsOffset(o) => offset_secs = *o,
                _ => {}
            }
        }
        Interface { link: LinkType::from(idb.linktype), units_per_sec, offset_secs }
    }

    fn timestamp(&self, raw: u64) -> Timestamp {
        let ups = self.units_per_sec;
        let secs = raw / ups + self.offset_secs;
        let frac = u128::from(raw % ups);
        let nanos = (frac * 1_000_000_000 / u128::from(ups)) as u32; // < 10^9: fits
        Timestamp::from_secs_nanos(secs, nanos)
    }
}

enum Format {
    Pcap { header: PcapHeader, link: LinkType },
    PcapNg { parser: PcapNgParser, big_endian: bool, interfaces: Vec<Option<Interface>> },
}

/// A pcap or pcapng reader that frames records itself and reports byte offsets.
pub struct CaptureReader<R> {
    src: R,
    buf: Vec<u8>,
    /// Start of unread data in `buf`.
    pos: usize,
    /// File offset of `buf[0]`.
    base: u64,
    eof: bool,
    format: Format,
}

impl<R: Read> CaptureReader<R> {
    /// Opens a capture: reads and checks the file header (pcap) or first section header (pcapng).
    pub fn new(src: R) -> Result<Self, ReadError> {
        let mut r = CaptureReader {
            src,
            buf: Vec::with_capacity(CHUNK),
            pos: 0,
            base: 0,
            eof: false,
            format: Format::Pcap { header: PcapHeader::default(), link: LinkType::Ethernet },
        };
        r.fill(4).map_err(|e| r.err(0, format!("read error: {e}")))?;
        let Some(magic) = r.buf.get(..4) else {
            return Err(r.err(0, "file too short for a capture header".into()));
        };
        let magic = [magic[0], magic[1], magic[2], magic[3]];
        match u32::from_be_bytes(magic) {
            0xA1B2_C3D4 | 0xD4C3_B2A1 | 0xA1B2_3C4D | 0x4D3C_B2A1 => {
                r.fill(24).map_err(|e| r.err(0, format!("read error: {e}")))?;
                let (header, _) = match PcapHeader::from_slice(&r.buf) {
                    Ok((rest, h)) => (h, rest.len()),
                    Err(e) => return Err(r.err(0, format!("bad pcap file header: {e}"))),
                };
                r.pos = 24;
                r.format = Format::Pcap { link: LinkType::from(header.datalink), header };
            }
            0x0A0D_0D0A => {
                let len = r.block_len()?;
                let (parser, used) = match PcapNgParser::new(&r.buf[..len]) {
                    Ok((rest, p)) => (p, len - rest.len()),
                    Err(e) => return Err(r.err(0, format!("bad pcapng section header: {e}"))),
                };
                let big_endian = parser.section().endianness == Endianness::Big;
                r.pos = used;
                r.format = Format::PcapNg { parser, big_endian, interfaces: Vec::new() };
            }
            m => return Err(r.err(0, format!("not a pcap or pcapng file (magic 0x{m:08x})"))),
        }
        Ok(r)
    }

    /// Bytes of the file consumed so far.
    pub fn offset(&self) -> u64 {
        self.base + self.pos as u64
    }

    /// Whether the capture is pcapng.
    pub fn is_pcapng(&self) -> bool {
        matches!(self.format, Format::PcapNg { .. })
    }

    /// The next record, or the error that ends the read (truncation, corrupt framing).
    pub fn next_record(&mut self) -> Result<Next<'_>, ReadError> {
        match self.format {
            Format::Pcap { .. } => self.next_pcap(),
            Format::PcapNg { .. } => self.next_pcapng(),
        }
    }

    fn next_pcap(&mut self) -> Result<Next<'_>, ReadError> {
        let at = self.offset();
        self.fill(16).map_err(|e| self.err(at, format!("read error: {e}")))?;
        let avail = self.buf.len() - self.pos;
        if avail == 0 {
            return Ok(Next::End);
        }
        if avail < 16 {
            return Err(self.err(at, format!("truncated packet record header ({avail} of 16 bytes)")));
        }
        let (header, link) = match &self.format {
            Format::Pcap { header, link } => (*header, *link),
            Format::PcapNg { .. } => return Ok(Next::End),
        };
        let big = header.endianness == Endianness::Big;
        let h = &self.buf[self.pos..self.pos + 16];
        let incl = if big { be32(&h[8..12]) } else { le32(&h[8..12]) } as usize;
        // Not raised by the header's snaplen: a corrupt header must not make a 4 GiB record plausible.
        if incl > MAX_PACKET {
            return Err(self.err(at, format!("corrupt record length {incl} (limit {MAX_PACKET})")));
        }
        self.fill(16 + incl).map_err(|e| self.err(at, format!("read error: {e}")))?;
        let avail = self.buf.len() - self.pos;
        if avail < 16 + incl {
            return Err(
                self.err(at, format!("truncated packet record: {incl} bytes of data, {} in the file", avail - 16))
            );
        }
        let slice = &self.buf[self.pos..self.pos + 16 + incl];
        let parsed = if big {
            RawPcapPacket::from_slice::<pcap_file_be::BigEndian>(slice)
        } else {
            RawPcapPacket::from_slice::<pcap_file_be::LittleEndian>(slice)
        };
        let raw = match parsed {
            Ok((_, raw)) => raw,
            Err(e) => return Err(self.err(at, format!("bad packet record: {e}"))),
        };
        self.pos += 16 + incl;
        let frac_ns = match header.ts_resolution {
            TsResolution::MicroSecond => u64::from(raw.ts_frac) * 1_000,
            TsResolution::NanoSecond => u64::from(raw.ts_frac),
        };
        let ts = Timestamp::from_secs(u64::from(raw.ts_sec)).saturating_add(Duration::from_nanos(frac_ns));
        let data = &self.buf[self.pos - incl..self.pos];
        Ok(Next::Packet(Record { ts, wire_len: raw.orig_len, link, data }))
    }

    fn next_pcapng(&mut self) -> Result<Next<'_>, ReadError> {
        let at = self.offset();
        self.fill(12).map_err(|e| self.err(at, format!("read error: {e}")))?;
        if self.buf.len() == self.pos {
            return Ok(Next::End);
        }
        let len = self.block_len()?;
        let start = self.pos;
        let Format::PcapNg { parser, big_endian, interfaces } = &mut self.format else { return Ok(Next::End) };
        let block = match parser.next_block(&self.buf[start..start + len]) {
            Ok((_, block)) => block,
            Err(e) => {
                let t = &self.buf[start..start + 4];
                let block_type = if *big_endian { be32(t) } else { le32(t) };
                if self.buf[start..start + 4] == [0x0A, 0x0D, 0x0D, 0x0A] {
                    return Err(self.err(at, format!("bad section header block: {e}")));
                }
                self.pos += len;
                return Ok(match block_type {
                    1 => {
                        // Keep the interface numbering: later packets name interfaces by index.
                        interfaces.push(None);
                        Next::Other
                    }
                    2 | 3 | 6 => Next::Skipped("invalid packet block"),
                    _ => Next::Other, // a broken statistics, name or custom block: nothing lost
                });
            }
        };
        self.pos += len;
        let (interface_id, raw_ts, wire_len, data) = match block {
            Block::SectionHeader(s) => {
                *big_endian = s.endianness == Endianness::Big;
                interfaces.clear();
                return Ok(Next::Other);
            }
            Block::InterfaceDescription(idb) => {
                interfaces.push(Some(Interface::from_idb(&idb)));
                return Ok(Next::Other);
            }
            Block::EnhancedPacket(epb) => {
                // pcap-file stores the raw 64-bit timestamp in a Duration's nanoseconds.
                let raw = u64::try_from(epb.timestamp.as_nanos()).unwrap_or(u64::MAX);
                (epb.interface_id, Some(raw), epb.original_len, epb.data)
            }
            Block::SimplePacket(spb) => (0, None, spb.original_len, spb.data),
            Block::Packet(pb) => (u32::from(pb.interface_id), Some(pb.timestamp), pb.original_len, pb.data),
            _ => return Ok(Next::Other),
        };
        let Some(Some(iface)) = interfaces.get(interface_id as usize) else {
            return Ok(Next::Skipped("packet names an unknown or invalid interface"));
        };
        let ts = raw_ts.map_or(Timestamp::ZERO, |raw| iface.timestamp(raw));
        let data = match data {
            std::borrow::Cow::Borrowed(d) => d,
            std::borrow::Cow::Owned(_) => return Ok(Next::Skipped("unexpected owned packet data")),
        };
        Ok(Next::Packet(Record { ts, wire_len, link: iface.link, data }))
    }

    /// Checks the framing of the pcapng block at `pos` and buffers all of it; returns its length.
    fn block_len(&mut self) -> Result<usize, ReadError> {
        let at = self.offset();
        let avail = self.buf.len() - self.pos;
        if avail < 12 {
            return Err(self.err(at, format!("truncated block header ({avail} of 12 bytes)")));
        }
        let h = &self.buf[self.pos..self.pos + 12];
        let is_shb = h[..4] == [0x0A, 0x0D, 0x0D, 0x0A];
        let big = if is_shb {
            match be32(&h[8..12]) {
                0x1A2B_3C4D => true,
                0x4D3C_2B1A => false,
                m => return Err(self.err(at, format!("bad section header byte-order magic 0x{m:08x}"))),
            }
        } else {
            match &self.format {
                Format::PcapNg { big_endian, .. } => *big_endian,
                Format::Pcap { .. } => false,
            }
        };
        let len = if big { be32(&h[4..8]) } else { le32(&h[4..8]) } as usize;
        if len % 4 != 0 || !(12..=MAX_BLOCK).contains(&len) {
            return Err(self.err(at, format!("corrupt block length {len}")));
        }
        self.fill(len).map_err(|e| self.err(at, format!("read error: {e}")))?;
        let avail = self.buf.len() - self.pos;
        if avail < len {
            return Err(self.err(at, format!("truncated block: {len} bytes long, {avail} in the file")));
        }
        let t = &self.buf[self.pos + len - 4..self.pos + len];
        let trailer = if big { be32(t) } else { le32(t) } as usize;
        if trailer != len {
            return Err(self.err(at, format!("corrupt block: length {len} but trailing length {trailer}")));
        }
        Ok(len)
    }

    /// Makes at least `want` unread bytes available, unless the file ends first.
    fn fill(&mut self, want: usize) -> io::Result<()> {
        if self.buf.len() - self.pos >= want || self.eof {
            return Ok(());
        }
        if self.pos > 0 {
            self.buf.drain(..self.pos);
            self.base += self.pos as u64;
            self.pos = 0;
        }
        while self.buf.len() < want && !self.eof {
            let old = self.buf.len();
            let room = (want - old).max(CHUNK);
            self.buf.resize(old + room, 0);
            let n = loop {
                match self.src.read(&mut self.buf[old..]) {
                    Ok(n) => break n,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                    Err(e) => {
                        self.buf.truncate(old);
                        return Err(e);
                    }
                }
            };
            self.buf.truncate(old + n);
            if n == 0 {
                self.eof = true;
            }
        }
        Ok(())
    }

    fn err(&self, offset: u64, message: String) -> ReadError {
        ReadError { offset, message }
    }
}

/// Byte-order helpers without another dependency.
mod byteorder_free {
    pub fn be32(b: &[u8]) -> u32 {
        u32::from_be_bytes([b[0], b[1], b[2], b[3]])
    }
    pub fn le32(b: &[u8]) -> u32 {
        u32::from_le_bytes([b[0], b[1], b[2], b[3]])
    }
}

/// pcap-file takes its byte order as a `byteorder` type parameter; `byteorder_slice` re-exports it.
mod pcap_file_be {
    pub use byteorder_slice::{BigEndian, LittleEndian};
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tsresol_conversion() {
        let micro = Interface { link: LinkType::Ethernet, units_per_sec: 1_000_000, offset_secs: 0 };
        assert_eq!(micro.timestamp(1_619_605_821_437_184).to_string(), "1619605821.437184000");
        let nano = Interface { link: LinkType::Ethernet, units_per_sec: 1_000_000_000, offset_secs: 0 };
        assert_eq!(nano.timestamp(1_646_495_837_086_190_409).to_string(), "1646495837.086190409");
        let binary = Interface { link: LinkType::Ethernet, units_per_sec: 1 << 10, offset_secs: 5 };
        assert_eq!(binary.timestamp(1024 + 512).to_string(), "6.500000000");
    }

    #[test]
    fn not_a_capture() {
        let e = CaptureReader::new(&b"hello world, this is text"[..]).err().map(|e| e.to_string());
        assert!(e.is_some_and(|m| m.contains("byte offset 0")));
        assert!(CaptureReader::new(&b""[..]).is_err());
    }
}
