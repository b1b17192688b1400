//! `bench-s3server HOST PORT ACCESS_KEY SECRET_KEY ROOT`: an S3 server storing objects under
//! ROOT (s3s-fs), each accepted connection with `TCP_NODELAY`. Stops on SIGTERM or Ctrl-C.

use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use s3s::auth::SimpleAuth;
use s3s::service::S3ServiceBuilder;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let [host, port, access, secret, root] = args.as_slice() else {
        return Err("usage: bench-s3server HOST PORT ACCESS_KEY SECRET_KEY ROOT".into());
    };
    let mut builder = S3ServiceBuilder::new(s3s_fs::FileSystem::new(root).map_err(|e| format!("{root}: {e:?}"))?);
    builder.set_auth(SimpleAuth::from_single(access.as_str(), secret.as_str()));
    let service = builder.build();
    let listener = tokio::net::TcpListener::bind((host.as_str(), port.parse::<u16>()?)).await?;
    let http = Builder::new(TokioExecutor::new());
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
    loop {
        let socket = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((socket, _)) => socket,
                Err(_) => continue,
            },
            _ = term.recv() => return Ok(()),
            _ = tokio::signal::ctrl_c() => return Ok(()),
        };
        socket.set_nodelay(true)?;
        let connection = http.serve_connection(TokioIo::new(socket), service.clone()).into_owned();
        tokio::spawn(async move {
            let _ = connection.await;
        });
    }
}
