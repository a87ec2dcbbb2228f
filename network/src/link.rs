//! Links, addresses and routes through netlink (rtnetlink, on a runtime of its own for each
//! call). Work inside a container's namespace runs on a thread that has joined it, so its
//! netlink socket speaks to that namespace.

use std::net::{IpAddr, Ipv4Addr};
use std::os::fd::AsRawFd;
use std::path::Path;

use futures_util::stream::TryStreamExt;
use rtnetlink::packet_route::link::{InfoData, InfoVeth};
use rtnetlink::{Handle, LinkBridge, LinkUnspec, LinkVeth, RouteMessageBuilder};

use crate::{Error, Network, Result};

/// Runs `f` with a netlink handle of the calling thread's network namespace.
fn with_handle<T>(
    what: &str,
    f: impl AsyncFnOnce(&Handle) -> std::result::Result<T, rtnetlink::Error>,
) -> Result<T> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .build()
        .map_err(|e| Error::setup(what, e))?;
    rt.block_on(async {
        let (conn, handle, _) = rtnetlink::new_connection().map_err(|e| Error::setup(what, e))?;
        tokio::spawn(conn);
        f(&handle).await.map_err(|e| Error::setup(what, e))
    })
}

/// The index of link `name`, None when there is none.
async fn index_of(h: &Handle, name: &str) -> std::result::Result<Option<u32>, rtnetlink::Error> {
    let mut links = h.link().get().match_name(name.to_string()).execute();
    match links.try_next().await {
        Ok(l) => Ok(l.map(|l| l.header.index)),
        Err(rtnetlink::Error::NetlinkError(e)) if e.raw_code() == -libc::ENODEV => Ok(None),
        Err(e) => Err(e),
    }
}

/// Whether a netlink error is "exists already".
fn exists(e: &rtnetlink::Error) -> bool {
    matches!(e, rtnetlink::Error::NetlinkError(m) if m.raw_code() == -libc::EEXIST)
}

/// The network's bridge, up, with the gateway address: made when missing.
pub fn ensure_bridge(net: &Network) -> Result<()> {
    with_handle(&format!("bridge {}", net.bridge), async |h| {
        let index = match index_of(h, &net.bridge).await? {
            Some(i) => i,
            None => {
                match h
                    .link()
                    .add(LinkBridge::new(&net.bridge).build())
                    .execute()
                    .await
                {
                    Ok(()) => {}
                    Err(e) if exists(&e) => {} // made by another lb meanwhile
                    Err(e) => return Err(e),
                }
                index_of(h, &net.bridge)
                    .await?
                    .expect("the bridge was just made")
            }
        };
        match h
            .address()
            .add(index, IpAddr::V4(net.gateway()), net.prefix)
            .execute()
            .await
        {
            Ok(()) => {}
            Err(e) if exists(&e) => {}
            Err(e) => return Err(e),
        }
        h.link()
            .set(LinkUnspec::new_with_index(index).up().build())
            .execute()
            .await
    })
}

/// A veth pair from the bridge (`host`, up, on the bridge) into the namespace of
/// `netns_file` (`eth0` with `ip`, up; `lo` up; the default route through the gateway).
/// The pair is made with its peer already in the namespace and named `eth0`, and the host
/// end already on the bridge and up: one request, and no move of a link between namespaces
/// (whose `synchronize_net` was most of a container's network start).
pub fn connect(net: &Network, host: &str, netns_file: &Path, ip: Ipv4Addr) -> Result<()> {
    let ns = std::fs::File::open(netns_file)
        .map_err(|e| Error::setup(netns_file.display().to_string(), e))?;
    with_handle(&format!("veth {host}"), async |h| {
        let bridge = index_of(h, &net.bridge).await?.unwrap_or_default();
        let peer = rtnetlink::LinkMessageBuilder::<LinkUnspec>::new()
            .name("eth0".to_string())
            .setns_by_fd(ns.as_raw_fd())
            .build();
        h.link()
            .add(
                LinkVeth::new(host, "eth0")
                    .set_info_data(InfoData::Veth(InfoVeth::Peer(peer)))
                    .controller(bridge)
                    .up()
                    .build(),
            )
            .execute()
            .await
    })?;
    let gateway = net.gateway();
    let prefix = net.prefix;
    std::thread::scope(|s| {
        s.spawn(|| {
            nix::sched::setns(&ns, nix::sched::CloneFlags::CLONE_NEWNET)
                .map_err(|e| Error::setup("join the container's network namespace", e))?;
            with_handle("the container's eth0", async |h| {
                let lo = index_of(h, "lo").await?.unwrap_or(1);
                h.link()
                    .set(LinkUnspec::new_with_index(lo).up().build())
                    .execute()
                    .await?;
                let eth = index_of(h, "eth0").await?.unwrap_or_default();
                h.address()
                    .add(eth, IpAddr::V4(ip), prefix)
                    .execute()
                    .await?;
                h.link()
                    .set(LinkUnspec::new_with_index(eth).up().build())
                    .execute()
                    .await?;
                let route = RouteMessageBuilder::<Ipv4Addr>::new()
                    .gateway(gateway)
                    .build();
                h.route().add(route).execute().await
            })
        })
        .join()
        .unwrap_or_else(|_| Err(Error::setup("network setup", "the thread panicked")))
    })
}

/// Deletes link `name` (its veth peer goes with it); nothing when it is gone.
pub fn remove(name: &str) -> Result<()> {
    with_handle(&format!("delete {name}"), async |h| {
        match index_of(h, name).await? {
            Some(i) => h.link().del(i).execute().await,
            None => Ok(()),
        }
    })
}

/// Whether any address of this host lies in `subnet/prefix` (a subnet for a new network
/// must not clash with one in use).
pub fn subnet_in_use(subnet: Ipv4Addr, prefix: u8) -> Result<bool> {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(prefix))
    };
    with_handle("host addresses", async |h| {
        let mut addrs = h.address().get().execute();
        while let Some(a) = addrs.try_next().await? {
            for attr in a.attributes {
                if let rtnetlink::packet_route::address::AddressAttribute::Address(IpAddr::V4(ip)) =
                    attr
                {
                    let other = if a.header.prefix_len == 0 {
                        0
                    } else {
                        u32::MAX << (32 - u32::from(a.header.prefix_len))
                    };
                    let m = mask & other;
                    if u32::from(ip) & m == u32::from(subnet) & m {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    })
}
