//! The cluster's transport secured: members speak TLS with client certificates from the
//! cluster's CA (a non-member cannot even ask), and etcd is reached over TLS with a client
//! certificate and a user and password.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::{BodyExt, Empty};
use kura_testkit::etcd::{Etcd, EtcdTls, free_addr};
use kura_testkit::origin::ranged;
use kura_testkit::tls::Pki;
use kura_testkit::{TestKura, TokioIo, eventually, get};

const MIB: u64 = 1024 * 1024;
const SECRET: &str = "test-secret-0123456789";

fn node_config(ip: &str, peering: &str, members: &str, origin: &str, tls: &str) -> String {
    format!(
        r#"
[[listeners]]
address = "{ip}:0"
[admin]
address = "{ip}:0"
[cache]
memory = "64MiB"
[cluster]
peering_address = "{peering}"
secret = "{SECRET}"
peer_timeout = "10s"
{members}
{tls}
[pools.origin]
backends = ["{origin}"]
[[vhosts]]
hosts = ["*"]
pool = "origin"
action = "cache"
"#
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn members_speak_tls_with_client_certificates() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    let ca = dir.path().join("ca.pem");
    let (origin, st) = ranged("origin", 6 * MIB, "max-age=3600").await;
    let peers = [free_addr("127.0.0.1"), free_addr("127.0.0.2")];
    let members = format!("peers = [\"{}\", \"{}\"]", peers[0], peers[1]);
    let mut nodes = Vec::new();
    for (i, p) in peers.iter().enumerate() {
        let ip = p.ip().to_string();
        let leaf = pki.leaf(dir.path(), &format!("node{i}"), &[&ip]);
        let tls = format!(
            "tls_cert = \"{}\"\ntls_key = \"{}\"\ntls_ca = \"{}\"",
            leaf.cert.display(),
            leaf.key.display(),
            ca.display()
        );
        nodes.push(
            TestKura::start(&node_config(
                &ip,
                &p.to_string(),
                &members,
                &origin.url(),
                &tls,
            ))
            .await,
        );
    }
    // Both nodes serve the object; each segment comes from the origin once, the rest from
    // its owner over TLS.
    for n in &nodes {
        let r = get(n.addr, "files.test", "/x.iso").await;
        assert_eq!(r.status, 200);
        assert_eq!(r.body.len() as u64, 6 * MIB);
    }
    let ranges = st.range_requests();
    let mut unique = ranges.clone();
    unique.sort();
    unique.dedup();
    assert_eq!(
        ranges.len(),
        unique.len(),
        "a segment fetched twice: {ranges:?}"
    );
    let answered: u64 = {
        let mut n = 0;
        for node in &nodes {
            n += node.admin_json("/cluster").await["peer_answers"]
                .as_u64()
                .unwrap();
        }
        n
    };
    assert!(answered > 0, "no segment came from a peer");

    // A client without a certificate from the CA gets no session at all...
    let target = nodes[0].handle.peer_addr().unwrap();
    let tcp = tokio::net::TcpStream::connect(target).await.unwrap();
    let no_cert = pki.client(&[b"h2"]);
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let refused = async {
        let tls = tokio_rustls::TlsConnector::from(no_cert)
            .connect(name, tcp)
            .await?;
        let (mut h2, conn) =
            hyper::client::conn::http2::Builder::new(hyper_util::rt::TokioExecutor::new())
                .handshake::<_, Empty<Bytes>>(TokioIo::new(tls))
                .await
                .map_err(std::io::Error::other)?;
        tokio::spawn(conn);
        h2.send_request(
            Request::get(format!("http://{target}/x.iso"))
                .header("x-kura-peer-secret", SECRET)
                .body(Empty::new())
                .unwrap(),
        )
        .await
        .map_err(std::io::Error::other)
    };
    assert!(
        tokio::time::timeout(Duration::from_secs(5), refused)
            .await
            .expect("no hang")
            .is_err(),
        "a client without a certificate was served"
    );
    // ...and a cleartext peer request to the TLS port neither.
    let plain = kura_cluster::client::PeerClient::default()
        .send(
            target,
            Request::get(format!("http://{target}/x.iso"))
                .header("x-kura-peer-secret", SECRET)
                .body(Empty::new())
                .unwrap(),
            Duration::from_secs(2),
        )
        .await;
    assert!(plain.is_err(), "cleartext was served on the TLS peer port");
    let _ = BodyExt::collect(Empty::<Bytes>::new()).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn etcd_is_reached_over_tls_with_a_user() {
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::new();
    std::fs::write(dir.path().join("ca.pem"), pki.ca_pem()).unwrap();
    let ca = dir.path().join("ca.pem");
    let server = pki.leaf(dir.path(), "etcd", &["127.0.0.1", "localhost"]);
    let client = pki.leaf(dir.path(), "kura", &["kura"]);
    let etcd = Etcd::start_with(Some(EtcdTls {
        cert: &server.cert,
        key: &server.key,
        ca: &ca,
    }));
    // Authentication on: a root user with a password.
    {
        let _ = rustls::crypto::aws_lc_rs::default_provider().install_default();
        let read = |p: &std::path::Path| std::fs::read(p).unwrap();
        use etcdv3client::grpc::{CredentialInterceptor, TonicClient};
        use etcdv3client::pb;
        use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
        let tls = ClientTlsConfig::new()
            .ca_certificate(Certificate::from_pem(read(&ca)))
            .identity(Identity::from_pem(read(&client.cert), read(&client.key)));
        let channel = Endpoint::from_shared(etcd.url.clone())
            .unwrap()
            .tls_config(tls)
            .unwrap()
            .connect()
            .await
            .unwrap();
        let mut admin = etcdv3client::Client::with_service(CredentialInterceptor::new(
            None,
            None,
            TonicClient::new(channel),
        ));
        admin
            .auth
            .user_add(pb::AuthUserAddRequest {
                name: "root".into(),
                password: "s3cret-pw".into(),
                ..Default::default()
            })
            .await
            .unwrap();
        admin
            .auth
            .user_grant_role(pb::AuthUserGrantRoleRequest {
                user: "root".into(),
                role: "root".into(),
            })
            .await
            .unwrap();
        admin
            .auth
            .auth_enable(pb::AuthEnableRequest {})
            .await
            .unwrap();
    }
    let (origin, _) = ranged("origin", MIB, "max-age=3600").await;
    let peering = free_addr("127.0.0.1");
    let members = format!(
        "etcd = [\"{}\"]\nlease_ttl = \"3s\"\netcd_ca = \"{}\"\netcd_cert = \"{}\"\netcd_key = \"{}\"\netcd_user = \"root\"\netcd_password = \"s3cret-pw\"",
        etcd.url,
        ca.display(),
        client.cert.display(),
        client.key.display()
    );
    let node = TestKura::start(&node_config(
        "127.0.0.1",
        &peering.to_string(),
        &members,
        &origin.url(),
        "",
    ))
    .await;
    // etcd checks the password with bcrypt, and kura gives up on a request after 5 s: on a
    // loaded machine registering may take several attempts.
    assert!(
        eventually(Duration::from_secs(60), || async {
            let v = node.admin_json("/cluster").await;
            v["etcd_up"] == 1 && v["members"].as_array().map(Vec::len) == Some(1)
        })
        .await,
        "the node never registered through TLS etcd: {}",
        node.admin_json("/cluster").await
    );
    // A wrong password keeps it out.
    let wrong = members.replace("s3cret-pw", "wrong-password");
    let peering = free_addr("127.0.0.1");
    let outsider = TestKura::start(&node_config(
        "127.0.0.1",
        &peering.to_string(),
        &wrong,
        &origin.url(),
        "",
    ))
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(outsider.admin_json("/cluster").await["etcd_up"], 0);
}
