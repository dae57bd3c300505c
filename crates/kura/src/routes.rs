//! `kura routes`: add, remove, list and load frontends in Redis (Hipache's schema) through
//! `kura_proxy::redis_routes::store`, so operators need neither redis-cli nor the key layout.

use std::process::ExitCode;

use anyhow::{Context, bail};
use kura_config::Config;
use kura_proxy::redis_routes::store::Store;

use crate::cli::{RoutesAction, RoutesArgs};

pub fn run(args: RoutesArgs) -> ExitCode {
    let rt = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("kura routes: cannot start the runtime: {e}");
            return ExitCode::from(1);
        }
    };
    match rt.block_on(execute(args)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("kura routes: {e:#}");
            ExitCode::from(1)
        }
    }
}

fn redis_url(args: &RoutesArgs) -> anyhow::Result<String> {
    if let Some(url) = &args.redis {
        return Ok(url.clone());
    }
    let Some(path) = &args.config else {
        bail!("give --redis URL (or KURA_REDIS), or --config FILE with a [redis] section");
    };
    let config = Config::from_file(path).with_context(|| path.display().to_string())?;
    config
        .redis
        .map(|r| r.url)
        .with_context(|| format!("{}: no [redis] section", path.display()))
}

async fn execute(args: RoutesArgs) -> anyhow::Result<()> {
    let url = redis_url(&args)?;
    let mut store = Store::connect(&url).await?;
    match args.action {
        RoutesAction::Add { host, backends, id } => {
            let added = store.add(&host, &backends, id.as_deref()).await?;
            let skipped = backends.len() - added.len();
            println!(
                "{host}: added {} backend(s){}",
                added.len(),
                if skipped > 0 {
                    format!(", {skipped} already there")
                } else {
                    String::new()
                }
            );
        }
        RoutesAction::Rm { host, backend } => {
            if !store.remove(&host, backend.as_deref()).await? {
                match backend {
                    Some(b) => bail!("{host}: no backend {b}"),
                    None => bail!("{host}: no such frontend"),
                }
            }
            println!(
                "{host}: removed {}",
                backend.as_deref().unwrap_or("frontend")
            );
        }
        RoutesAction::List { host, json } => {
            for f in store.list(host.as_deref()).await? {
                if json {
                    println!(
                        "{}",
                        serde_json::json!({
                            "host": f.host, "id": f.id, "backends": f.backends, "dead": f.dead,
                        })
                    );
                } else {
                    let backends: Vec<String> = f
                        .backends
                        .iter()
                        .enumerate()
                        .map(|(i, b)| {
                            if f.dead.contains(&i) {
                                format!("{b} (dead)")
                            } else {
                                b.clone()
                            }
                        })
                        .collect();
                    println!("{}\t{}\t{}", f.host, f.id, backends.join(" "));
                }
            }
        }
        RoutesAction::Load { file } => {
            let config = Config::from_file(&file).with_context(|| file.display().to_string())?;
            for note in store.load(&config).await? {
                println!("{note}");
            }
        }
    }
    Ok(())
}
