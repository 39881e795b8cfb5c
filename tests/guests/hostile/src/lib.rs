//! A router that misbehaves on purpose, chosen by `mode` in its config. The host's hostile-plugin
//! tests build it from source and check that each misbehaviour ends in the right typed fault,
//! that the fail policy decides the outcome, and that the runtime serves the next call.

wit_bindgen::generate!({
    path: "../../../wit/0.1.0",
    world: "router",
});

use gaffer::plugin::host;

struct Hostile;

fn decision(request: &RouteRequest, reason: String) -> Result<RouteDecision, String> {
    let model = request
        .models
        .first()
        .map(|m| m.id.clone())
        .ok_or_else(|| "no models offered".to_string())?;
    Ok(RouteDecision {
        model,
        attempt_budget: 1_000,
        reason,
    })
}

fn config() -> serde_json::Value {
    serde_json::from_str(&host::config()).unwrap_or(serde_json::Value::Null)
}

#[inline(never)]
#[allow(unconditional_recursion)]
fn recurse(depth: u64, sink: &mut [u64; 64]) -> u64 {
    // The array keeps each frame big and the arithmetic keeps the recursion from being turned
    // into a loop.
    sink[(depth % 64) as usize] = depth;
    let below = recurse(depth + 1, sink);
    below.wrapping_add(sink[(depth % 7) as usize])
}

#[inline(never)]
fn fib(n: u64) -> u64 {
    if n < 2 { n } else { fib(n - 1) + fib(n - 2) }
}

impl Guest for Hostile {
    fn route(request: RouteRequest) -> Result<RouteDecision, String> {
        let config = config();
        let mode = config["mode"].as_str().unwrap_or("ok").to_string();
        match mode.as_str() {
            "ok" => decision(&request, format!("ok for {}", request.task.id)),
            "spin" => {
                let mut x: u64 = 0;
                loop {
                    x = std::hint::black_box(x.wrapping_add(1));
                }
            }
            "log-loop" => loop {
                host::log(host::LogLevel::Debug, "still here", &[]);
            },
            "log-flood" => {
                // Host calls that burn no fuel of the plugin's: 32 MiB handed to `log` again
                // and again. Only the deadline can end this.
                let big = "x".repeat(32 * 1024 * 1024);
                let fields = vec![("k".repeat(1 << 16), "v".repeat(1 << 16)); 16];
                loop {
                    host::log(host::LogLevel::Info, std::hint::black_box(&big), &fields);
                }
            }
            "await-host" => {
                // The test's model access never answers: the call must end at its deadline.
                let answer = host::complete(&host::CompletionRequest {
                    model: config["model"].as_str().unwrap_or("slow").to_string(),
                    messages: vec![],
                    max_tokens: 16,
                });
                decision(&request, format!("complete answered: {}", answer.is_ok()))
            }
            "grow" => {
                let mut hoard: Vec<Vec<u8>> = Vec::new();
                loop {
                    let mut chunk = vec![0u8; 1024 * 1024];
                    chunk[0] = hoard.len() as u8;
                    hoard.push(std::hint::black_box(chunk));
                }
            }
            "recurse" => {
                let mut sink = [0u64; 64];
                let depth = recurse(0, &mut sink);
                decision(&request, format!("recursed {depth}"))
            }
            "panic" => panic!("hostile plugin panicked on purpose"),
            "huge-output" => {
                let bytes = config["bytes"].as_u64().unwrap_or(8 * 1024 * 1024) as usize;
                decision(&request, "x".repeat(bytes))
            }
            "return-error" => Err("the router refuses on purpose".to_string()),
            "bad-model" => Ok(RouteDecision {
                model: "no-such-model".to_string(),
                attempt_budget: 1,
                reason: "naming a model that was not offered".to_string(),
            }),
            "ambient" => {
                // Try every ambient authority a sandbox must not give, and report what happened.
                let file = match std::fs::read("/etc/passwd") {
                    Ok(_) => "file=OPENED".to_string(),
                    Err(e) => format!("file=denied({e})"),
                };
                let dir = match std::fs::read_dir(".") {
                    Ok(_) => "dir=OPENED".to_string(),
                    Err(e) => format!("dir=denied({e})"),
                };
                let socket = match std::net::TcpStream::connect("127.0.0.1:9") {
                    Ok(_) => "socket=CONNECTED".to_string(),
                    Err(e) => format!("socket=denied({e})"),
                };
                let env_count = std::env::vars().count();
                let env = if env_count == 0 && std::env::var("HOME").is_err() {
                    "env=empty".to_string()
                } else {
                    format!("env=VISIBLE({env_count})")
                };
                let clock = std::time::SystemTime::now()
                    .duration_since(std::time::UNIX_EPOCH)
                    .map(|d| d.as_secs())
                    .unwrap_or(0);
                decision(
                    &request,
                    format!("{file} {dir} {socket} {env} clock={clock}"),
                )
            }
            "complete" => {
                let answer = host::complete(&host::CompletionRequest {
                    model: config["model"].as_str().unwrap_or("cheap").to_string(),
                    messages: vec![host::Message {
                        role: host::Role::User,
                        content: format!("route {}", request.task.title),
                    }],
                    max_tokens: 64,
                });
                match answer {
                    Ok(c) => decision(
                        &request,
                        format!("model said: {} (cost {})", c.text, c.cost),
                    ),
                    Err(e) => decision(&request, format!("complete refused: {e:?}")),
                }
            }
            "read-file" => {
                let path = config["path"].as_str().unwrap_or("README.md");
                match host::read_file(path) {
                    Ok(text) => decision(&request, format!("read: {}", text.trim())),
                    Err(e) => decision(&request, format!("read refused: {e:?}")),
                }
            }
            "fuel" => {
                // Burn a known amount of compute, then answer: for fuel accounting tests.
                let rounds = config["rounds"].as_u64().unwrap_or(1_000);
                let mut x: u64 = 1;
                for i in 0..rounds {
                    x = std::hint::black_box(x.wrapping_mul(6364136223846793005).wrapping_add(i));
                }
                decision(&request, format!("burned {rounds} rounds ({x})"))
            }
            "fib" => {
                // Call-heavy work: naive recursive Fibonacci.
                let n = config["n"].as_u64().unwrap_or(20);
                let value = fib(std::hint::black_box(n));
                decision(&request, format!("fib({n}) = {value}"))
            }
            other => Err(format!("unknown mode `{other}`")),
        }
    }
}

export!(Hostile);
