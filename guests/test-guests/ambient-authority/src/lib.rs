//! Looks for every kind of ambient authority a WASI program might inherit and reports what it
//! found. The host grants none: the test expects empty lists and failed opens.
use airlock_guest::{Connector, Error, Manifest, Operation, Params, Value, json};

struct AmbientAuthority;

impl Connector for AmbientAuthority {
    fn manifest() -> Manifest {
        Manifest::new(
            "ambient-authority",
            "Ambient authority",
            "0.1.0",
            "Probes for inherited authority",
        )
        .operation(Operation::read(
            "probe",
            "Report env, args, files and sockets visible to the guest",
        ))
    }

    fn invoke(_operation: &str, _params: Params) -> Result<Value, Error> {
        println!("hello from the guest's stdout");
        eprintln!("hello from the guest's stderr");
        let env: Vec<String> = std::env::vars().map(|(k, _)| k).collect();
        let args: Vec<String> = std::env::args().collect();
        let files = ["/", ".", "/etc/passwd", "/proc/self/environ"]
            .iter()
            .map(|p| json!({"path": p, "readable": std::fs::read_dir(p).is_ok() || std::fs::read(p).is_ok()}))
            .collect::<Vec<_>>();
        let tcp = std::net::TcpStream::connect("127.0.0.1:5432").is_ok();
        let udp = std::net::UdpSocket::bind("0.0.0.0:0").is_ok();
        let cwd = std::env::current_dir()
            .map(|p| p.display().to_string())
            .ok();
        Ok(json!({"env": env, "args": args, "files": files, "tcp": tcp, "udp": udp, "cwd": cwd}))
    }
}

airlock_guest::export_connector!(AmbientAuthority);
