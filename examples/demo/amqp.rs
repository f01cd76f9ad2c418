//! Just enough AMQP 0-9-1 for the demo's gateway and agents to talk through a real RabbitMQ: one
//! connection with one channel, queues declared, messages published to the default exchange (the
//! queue's name as routing key) and fetched with `basic.get` (no acknowledgement: taken is done).
//! Blocking, on `std::net`, as the rest of the demo server. Frames and types as the AMQP 0-9-1
//! specification (section 4.2) lays them out.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::Duration;

const FRAME_METHOD: u8 = 1;
const FRAME_HEADER: u8 = 2;
const FRAME_BODY: u8 = 3;
const FRAME_HEARTBEAT: u8 = 8;
const FRAME_END: u8 = 0xCE;

/// A message fetched from a queue.
pub struct Message {
    /// Its body.
    pub body: Vec<u8>,
    /// Where an answer goes (`reply-to`).
    pub reply_to: Option<String>,
    /// The question it answers or asks (`correlation-id`).
    pub correlation_id: Option<String>,
}

/// A connection to a broker with channel 1 open.
pub struct Amqp {
    stream: TcpStream,
    frame_max: u32,
}

fn broken(what: impl Into<String>) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.into())
}

/// Builds method and content payloads.
#[derive(Default)]
struct Args(Vec<u8>);

impl Args {
    fn u8(mut self, v: u8) -> Self {
        self.0.push(v);
        self
    }
    fn u16(mut self, v: u16) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u32(mut self, v: u32) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn u64(mut self, v: u64) -> Self {
        self.0.extend_from_slice(&v.to_be_bytes());
        self
    }
    fn short(mut self, s: &str) -> Self {
        let s = &s.as_bytes()[..s.len().min(255)];
        self.0.push(s.len() as u8);
        self.0.extend_from_slice(s);
        self
    }
    fn long(mut self, s: &[u8]) -> Self {
        self.0.extend_from_slice(&(s.len() as u32).to_be_bytes());
        self.0.extend_from_slice(s);
        self
    }
    /// An empty field table.
    fn table(self) -> Self {
        self.u32(0)
    }
}

/// Reads fields from a payload.
struct Fields<'a>(&'a [u8]);

impl Fields<'_> {
    fn take(&mut self, n: usize) -> io::Result<&[u8]> {
        if self.0.len() < n {
            return Err(broken("a frame ended early"));
        }
        let (head, rest) = self.0.split_at(n);
        self.0 = rest;
        Ok(head)
    }
    fn u8(&mut self) -> io::Result<u8> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> io::Result<u16> {
        Ok(u16::from_be_bytes([self.u8()?, self.u8()?]))
    }
    fn u32(&mut self) -> io::Result<u32> {
        let b = self.take(4)?;
        Ok(u32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
    fn u64(&mut self) -> io::Result<u64> {
        Ok((u64::from(self.u32()?) << 32) | u64::from(self.u32()?))
    }
    fn short(&mut self) -> io::Result<String> {
        let n = self.u8()? as usize;
        Ok(String::from_utf8_lossy(self.take(n)?).into_owned())
    }
    fn skip_long(&mut self) -> io::Result<()> {
        let n = self.u32()? as usize;
        self.take(n).map(|_| ())
    }
}

impl Amqp {
    /// Connects to `amqp://user:password@host:port/vhost` (port 5672 and vhost `/` when left
    /// out) and opens channel 1.
    pub fn connect(url: &str) -> io::Result<Amqp> {
        let rest = url.strip_prefix("amqp://").ok_or_else(|| broken(format!("not an amqp:// URL: {url}")))?;
        let (auth, rest) = rest.rsplit_once('@').unwrap_or(("guest:guest", rest));
        let (user, password) = auth.split_once(':').unwrap_or((auth, ""));
        let (hostport, vhost) = rest.split_once('/').unwrap_or((rest, ""));
        let vhost = if vhost.is_empty() { "/".to_string() } else { vhost.replace("%2F", "/").replace("%2f", "/") };
        let addr = if hostport.contains(':') { hostport.to_string() } else { format!("{hostport}:5672") };
        let stream = TcpStream::connect(&addr)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        stream.set_nodelay(true)?;
        let mut c = Amqp { stream, frame_max: 131_072 };
        c.stream.write_all(b"AMQP\x00\x00\x09\x01")?;
        c.expect(0, 10, 10)?; // connection.start
        let response = format!("\0{user}\0{password}");
        let start_ok = Args::default().table().short("PLAIN").long(response.as_bytes()).short("en_US");
        c.method(0, 10, 11, start_ok)?;
        let tune = c.expect(0, 10, 30)?; // connection.tune
        let mut tune = Fields(&tune);
        let channel_max = tune.u16()?;
        let frame_max = tune.u32()?;
        if frame_max != 0 {
            c.frame_max = c.frame_max.min(frame_max);
        }
        // No heartbeats: the demo's connections are short, or poll often.
        c.method(0, 10, 31, Args::default().u16(channel_max).u32(c.frame_max).u16(0))?;
        c.method(0, 10, 40, Args::default().short(&vhost).short("").u8(0))?;
        c.expect(0, 10, 41)?; // connection.open-ok
        c.method(1, 20, 10, Args::default().short(""))?;
        c.expect(1, 20, 11)?; // channel.open-ok
        Ok(c)
    }

    /// Declares a queue (durable, or else exclusive to this connection and removed with it; an
    /// empty name lets the broker name it) and returns its name.
    pub fn declare(&mut self, queue: &str, durable: bool) -> io::Result<String> {
        let bits = if durable { 0b0000_0010 } else { 0b0000_1100 };
        self.method(1, 50, 10, Args::default().u16(0).short(queue).u8(bits).table())?;
        Fields(&self.expect(1, 50, 11)?).short()
    }

    /// Publishes `body` to `queue` through the default exchange.
    pub fn publish(
        &mut self,
        queue: &str,
        body: &[u8],
        reply_to: Option<&str>,
        correlation_id: Option<&str>,
    ) -> io::Result<()> {
        self.method(1, 60, 40, Args::default().u16(0).short("").short(queue).u8(0))?;
        let flags = correlation_id.map_or(0, |_| 0x0400) | reply_to.map_or(0, |_| 0x0200);
        let mut header = Args::default().u16(60).u16(0).u64(body.len() as u64).u16(flags);
        if let Some(c) = correlation_id {
            header = header.short(c);
        }
        if let Some(r) = reply_to {
            header = header.short(r);
        }
        self.frame(FRAME_HEADER, 1, &header.0)?;
        let chunk = (self.frame_max as usize).saturating_sub(8).max(1);
        for part in body.chunks(chunk) {
            self.frame(FRAME_BODY, 1, part)?;
        }
        Ok(())
    }

    /// Takes the next message of `queue`, if there is one.
    pub fn get(&mut self, queue: &str) -> io::Result<Option<Message>> {
        self.method(1, 60, 70, Args::default().u16(0).short(queue).u8(1))?;
        let (class, method, _) = self.next_method(1)?;
        match (class, method) {
            (60, 72) => return Ok(None), // basic.get-empty
            (60, 71) => {}               // basic.get-ok
            other => return Err(broken(format!("unexpected answer to basic.get: {other:?}"))),
        }
        let (kind, _, header) = self.read_frame()?;
        if kind != FRAME_HEADER {
            return Err(broken("a message without its content header"));
        }
        let mut h = Fields(&header);
        let (_class, _weight, size, flags) = (h.u16()?, h.u16()?, h.u64()?, h.u16()?);
        let mut message = Message { body: Vec::new(), reply_to: None, correlation_id: None };
        if flags & 0x8000 != 0 {
            h.short()?; // content-type
        }
        if flags & 0x4000 != 0 {
            h.short()?; // content-encoding
        }
        if flags & 0x2000 != 0 {
            h.skip_long()?; // headers
        }
        if flags & 0x1000 != 0 {
            h.u8()?; // delivery-mode
        }
        if flags & 0x0800 != 0 {
            h.u8()?; // priority
        }
        if flags & 0x0400 != 0 {
            message.correlation_id = Some(h.short()?);
        }
        if flags & 0x0200 != 0 {
            message.reply_to = Some(h.short()?);
        }
        while (message.body.len() as u64) < size {
            let (kind, _, part) = self.read_frame()?;
            if kind != FRAME_BODY {
                return Err(broken("a message's body ended early"));
            }
            message.body.extend_from_slice(&part);
        }
        Ok(Some(message))
    }

    fn method(&mut self, channel: u16, class: u16, method: u16, args: Args) -> io::Result<()> {
        let payload = Args::default().u16(class).u16(method).0.into_iter().chain(args.0).collect::<Vec<u8>>();
        self.frame(FRAME_METHOD, channel, &payload)
    }

    fn frame(&mut self, kind: u8, channel: u16, payload: &[u8]) -> io::Result<()> {
        let mut out = Vec::with_capacity(payload.len() + 8);
        out.push(kind);
        out.extend_from_slice(&channel.to_be_bytes());
        out.extend_from_slice(&(payload.len() as u32).to_be_bytes());
        out.extend_from_slice(payload);
        out.push(FRAME_END);
        self.stream.write_all(&out)
    }

    fn read_frame(&mut self) -> io::Result<(u8, u16, Vec<u8>)> {
        loop {
            let mut head = [0u8; 7];
            self.stream.read_exact(&mut head)?;
            let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
            if size > (self.frame_max as usize).max(4096) {
                return Err(broken("a frame larger than agreed"));
            }
            let mut payload = vec![0u8; size + 1];
            self.stream.read_exact(&mut payload)?;
            if payload.pop() != Some(FRAME_END) {
                return Err(broken("a frame without its end marker"));
            }
            if head[0] != FRAME_HEARTBEAT {
                return Ok((head[0], u16::from_be_bytes([head[1], head[2]]), payload));
            }
        }
    }

    /// The next method frame on `channel`; a close from the broker is an error with its reason.
    fn next_method(&mut self, channel: u16) -> io::Result<(u16, u16, Vec<u8>)> {
        let (kind, on, payload) = self.read_frame()?;
        if kind != FRAME_METHOD {
            return Err(broken(format!("expected a method frame, got frame type {kind}")));
        }
        let mut f = Fields(&payload);
        let (class, method) = (f.u16()?, f.u16()?);
        if (class, method) == (10, 50) || (class, method) == (20, 40) {
            let code = f.u16()?;
            let text = f.short()?;
            return Err(io::Error::new(io::ErrorKind::ConnectionAborted, format!("broker closed: {code} {text}")));
        }
        if on != channel {
            return Err(broken(format!("a method on channel {on}, expected {channel}")));
        }
        let rest = f.0.to_vec();
        Ok((class, method, rest))
    }

    /// Reads the method `class.method` on `channel` and returns its arguments.
    fn expect(&mut self, channel: u16, class: u16, method: u16) -> io::Result<Vec<u8>> {
        let (c, m, rest) = self.next_method(channel)?;
        if (c, m) != (class, method) {
            return Err(broken(format!("expected method {class}.{method}, got {c}.{m}")));
        }
        Ok(rest)
    }
}
