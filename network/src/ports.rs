//! Published ports (`-p [IP:][HOSTPORT:]CTRPORT[/tcp|udp]`, `-P`): a socket bound on the
//! host for each, and a relay to the container's address, as docker's userland proxy does.
//! The sockets are bound before the container starts (a port in use fails the run); the
//! relays run in the process that follows the container and end with it. Connections to
//! any host address, loopback included, reach the container.

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::sync::Arc;

use crate::{Error, Result};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    Tcp,
    Udp,
}

/// One `-p`: where on the host (port 0: any free one) and which container port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortSpec {
    pub host_ip: IpAddr,
    pub host_port: u16,
    pub container_port: u16,
    pub proto: Proto,
}

impl std::fmt::Display for Proto {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Proto::Tcp => "tcp",
            Proto::Udp => "udp",
        })
    }
}

impl std::fmt::Display for PortSpec {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{}:{}->{}/{}",
            self.host_ip, self.host_port, self.container_port, self.proto
        )
    }
}

/// Parses docker's `-p` forms: `CTR`, `HOST:CTR`, `IP:HOST:CTR`, `IP::CTR`, each with an
/// optional `/tcp` or `/udp`.
pub fn parse_publish(s: &str) -> Result<PortSpec> {
    let bad = |why: &str| Error::setup(format!("-p {s}"), why);
    let (rest, proto) = match s.rsplit_once('/') {
        Some((r, "tcp")) => (r, Proto::Tcp),
        Some((r, "udp")) => (r, Proto::Udp),
        Some((_, p)) => return Err(bad(&format!("unknown protocol {p:?} (tcp or udp)"))),
        None => (s, Proto::Tcp),
    };
    let port = |p: &str, what: &str| -> Result<u16> {
        p.parse::<u16>()
            .ok()
            .filter(|n| *n > 0 || what == "host port")
            .ok_or_else(|| bad(&format!("invalid {what} {p:?}")))
    };
    let parts: Vec<&str> = rest.split(':').collect();
    let (ip, host, ctr) = match parts[..] {
        [c] => (None, "0", c),
        [h, c] => (None, h, c),
        [ip, h, c] => (Some(ip), if h.is_empty() { "0" } else { h }, c),
        _ => return Err(bad("want [IP:][HOSTPORT:]CTRPORT[/tcp|udp]")),
    };
    let host_ip = match ip {
        None | Some("") => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        Some(ip) => ip
            .parse()
            .map_err(|_| bad(&format!("invalid address {ip:?}")))?,
    };
    Ok(PortSpec {
        host_ip,
        host_port: port(host, "host port")?,
        container_port: port(ctr, "container port")?,
        proto,
    })
}

/// A bound host socket of a published port.
pub enum Bound {
    Tcp(TcpListener, PortSpec),
    Udp(UdpSocket, PortSpec),
}

impl Bound {
    /// The spec with the host port actually bound (for port 0).
    pub fn spec(&self) -> PortSpec {
        match self {
            Bound::Tcp(_, s) | Bound::Udp(_, s) => *s,
        }
    }
}

/// Binds `spec`'s host socket.
pub fn bind(spec: PortSpec) -> Result<Bound> {
    let addr = SocketAddr::new(spec.host_ip, spec.host_port);
    let taken = |e: io::Error| {
        Error::setup(
            format!("publishing {addr}"),
            format!("{e} (port is already allocated?)"),
        )
    };
    Ok(match spec.proto {
        Proto::Tcp => {
            let l = TcpListener::bind(addr).map_err(taken)?;
            let port = l.local_addr().map_err(taken)?.port();
            Bound::Tcp(
                l,
                PortSpec {
                    host_port: port,
                    ..spec
                },
            )
        }
        Proto::Udp => {
            let u = UdpSocket::bind(addr).map_err(taken)?;
            let port = u.local_addr().map_err(taken)?.port();
            Bound::Udp(
                u,
                PortSpec {
                    host_port: port,
                    ..spec
                },
            )
        }
    })
}

/// Relays every connection or datagram on `bound` to `container` (on a thread of its
/// own; runs until the process ends).
pub fn relay(bound: Bound, container: Ipv4Addr) {
    match bound {
        Bound::Tcp(listener, spec) => {
            let to = SocketAddr::new(IpAddr::V4(container), spec.container_port);
            std::thread::spawn(move || {
                for conn in listener.incoming().flatten() {
                    std::thread::spawn(move || {
                        let Ok(upstream) = TcpStream::connect(to) else {
                            return;
                        };
                        let _ = conn.set_nodelay(true);
                        let _ = upstream.set_nodelay(true);
                        let (mut a_r, mut b_w) = (conn, upstream);
                        let (Ok(mut a_w), Ok(mut b_r)) = (a_r.try_clone(), b_w.try_clone()) else {
                            return;
                        };
                        let up = std::thread::spawn(move || {
                            let _ = pump(&mut a_r, &mut b_w);
                            let _ = b_w.shutdown(std::net::Shutdown::Write);
                        });
                        let _ = pump(&mut b_r, &mut a_w);
                        let _ = a_w.shutdown(std::net::Shutdown::Write);
                        let _ = up.join();
                    });
                }
            });
        }
        Bound::Udp(socket, spec) => {
            let to = SocketAddr::new(IpAddr::V4(container), spec.container_port);
            let socket = Arc::new(socket);
            std::thread::spawn(move || {
                // One upstream socket per client, answers relayed back to that client.
                let mut clients: std::collections::HashMap<SocketAddr, UdpSocket> =
                    Default::default();
                let mut buf = vec![0u8; 65536];
                while let Ok((n, from)) = socket.recv_from(&mut buf) {
                    let up = match clients.get(&from) {
                        Some(u) => u,
                        None => {
                            let Ok(u) = UdpSocket::bind("0.0.0.0:0") else {
                                continue;
                            };
                            if u.connect(to).is_err() {
                                continue;
                            }
                            let (back, down) = (u.try_clone(), socket.clone());
                            if let Ok(back) = back {
                                std::thread::spawn(move || {
                                    let mut buf = vec![0u8; 65536];
                                    while let Ok(n) = back.recv(&mut buf) {
                                        let _ = down.send_to(&buf[..n], from);
                                    }
                                });
                            }
                            clients.entry(from).or_insert(u)
                        }
                    };
                    let _ = up.send(&buf[..n]);
                }
            });
        }
    }
}

/// Copies until end of stream with a 256 KiB buffer (`io::copy`'s 8 KiB made a published
/// port a third as fast as the container's own address).
fn pump(from: &mut TcpStream, to: &mut TcpStream) -> io::Result<u64> {
    use std::io::{Read, Write};
    let mut buf = vec![0u8; 256 << 10];
    let mut n = 0;
    loop {
        let got = match from.read(&mut buf) {
            Ok(0) => return Ok(n),
            Ok(k) => k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        to.write_all(&buf[..got])?;
        n += got as u64;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dockers_publish_forms_parse() {
        let p = |s| parse_publish(s).unwrap();
        let any = IpAddr::V4(Ipv4Addr::UNSPECIFIED);
        assert_eq!(
            p("8080:80"),
            PortSpec {
                host_ip: any,
                host_port: 8080,
                container_port: 80,
                proto: Proto::Tcp
            }
        );
        assert_eq!(p("80").host_port, 0);
        assert_eq!(
            p("127.0.0.1:8080:80/udp").host_ip,
            IpAddr::V4(Ipv4Addr::LOCALHOST)
        );
        assert_eq!(p("127.0.0.1:8080:80/udp").proto, Proto::Udp);
        assert_eq!(p("127.0.0.1::80").host_port, 0);
        for bad in ["x", "80/sctp", "1:2:3:4", "99999:80", "8080:0", "nope:1:2"] {
            assert!(parse_publish(bad).is_err(), "{bad}");
        }
    }
}
