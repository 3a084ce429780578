//! `image-registry check-config`: load and validate the config, print the effective settings.

use super::ConfigArg;

#[derive(clap::Args, Debug, Default)]
pub struct Args {
    #[command(flatten)]
    pub config: ConfigArg,
}

pub fn run(args: &Args) -> anyhow::Result<()> {
    let (c, warnings) = args.config.load()?;
    for w in warnings {
        eprintln!("warning: {w}");
    }
    println!("listen: {}", c.listen_addr()?);
    println!("storage: {:?}", c.storage_kind()?);
    println!("readOnly: {}", c.read_only());
    println!("tls: {}", c.tls_enabled());
    println!("metrics enabled: {}", c.metrics().enabled);
    println!("drain timeout: {:?}", c.http.draintimeout);
    println!("connection limits: {:?}", c.connection_limits());
    println!("delete enabled: {}", c.storage.delete.enabled);
    println!("link cache TTL: {:?}", c.storage.cache.linkttl);
    println!("auth: {:?}", c.auth.mode().map_err(anyhow::Error::msg)?);
    println!(
        "http.secret: {}",
        if c.http.secret.is_some() {
            "set"
        } else {
            "not set (random)"
        }
    );
    let upstreams: Vec<String> = c
        .proxy
        .all_upstreams()
        .into_iter()
        .map(|(_, u)| format!("{:?} -> {}", u.prefix, u.url))
        .collect();
    println!("pull-through upstreams: {upstreams:?}");
    let endpoints: Vec<&str> = c
        .notifications
        .active_endpoints()
        .map(|e| e.name.as_str())
        .collect();
    if endpoints.is_empty() {
        println!("notifications: off");
    } else {
        println!(
            "notifications: {} (spool {})",
            endpoints.join(", "),
            crate::events::spool_path(&c).display()
        );
    }
    if c.imagestreams_enabled() {
        println!(
            "imagestreams: on (server addr {})",
            c.openshift_server_addr()
        );
    }
    println!("config OK");
    Ok(())
}
