//! `conclave-bench`: builds conclave in release, installs oha if needed,
//! starts a mock upstream, measures, and writes `latest.json` and
//! `latest.md`. From the repository root:
//!
//! ```sh
//! cargo run --release -p conclave-bench -- --out bench/results
//! ```
//!
//! See docs/benchmarks.md for what each part measures.

use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use clap::Parser;
use conclave_bench::micro::{self, Micro};
use conclave_bench::mock::Mock;
use conclave_bench::oha::{self, Oha};
use conclave_bench::report::{self, Meta, Report};
use conclave_bench::suite::{self, Plan, Setup};
use conclave_bench::{Result, fail, stats};

#[derive(Parser)]
#[command(
    name = "conclave-bench",
    about = "Benchmarks conclave against a mock upstream"
)]
struct Args {
    /// Directory for latest.json and latest.md.
    #[arg(long, default_value = "bench/results")]
    out: PathBuf,
    /// A ~1 minute smoke run: one run, short phases, short micro-benchmarks.
    #[arg(long)]
    quick: bool,
    /// Measurement runs; the report shows their median (default 3, 1 with --quick).
    #[arg(long)]
    runs: Option<usize>,
    /// Seconds of each load phase (default 6, 2 with --quick).
    #[arg(long)]
    phase_seconds: Option<f64>,
    /// Use the conclave binary and benches as they are built.
    #[arg(long)]
    skip_build: bool,
    /// Do not run the criterion micro-benchmarks.
    #[arg(long)]
    skip_micro: bool,
    /// Do not measure the optional features (cache hits, observability).
    #[arg(long)]
    skip_features: bool,
    /// Measure only the team scenario (1,000 virtual keys), printing its
    /// figures as JSON; writes no report.
    #[arg(long)]
    team_only: bool,
    /// The conclave binary (default: <target>/release/conclave).
    #[arg(long)]
    conclave: Option<PathBuf>,
    /// The oha binary (default: <target>/bench-tools/bin/oha, installed if missing).
    #[arg(long)]
    oha: Option<PathBuf>,
    /// Count one plain (or, with --stream, streamed) request's cost under
    /// callgrind (needs valgrind) and print it, instead of the timed
    /// measurements: exact counts that repeat on a busy machine.
    #[arg(long)]
    counted: bool,
    /// With --counted, also simulate the caches and branch predictor:
    /// misses and an estimate of cycles (several times slower).
    #[arg(long, requires = "counted")]
    cache_sim: bool,
    /// With --counted, count a streamed request instead: the mock sends
    /// `counted::STREAM_CHUNKS` chunks with no gap between them.
    #[arg(long, requires = "counted")]
    stream: bool,
    /// With --counted, append this file's YAML to the counted config (top-level
    /// sections, e.g. `litellm_settings:` or `router_settings:`), to count
    /// what a feature costs when it is configured.
    #[arg(long, requires = "counted", value_name = "FILE")]
    with_config: Option<PathBuf>,
    /// Only serve the mock upstream for this many seconds (for profiling by
    /// hand), printing its address; measures nothing.
    #[arg(long, value_name = "SECONDS")]
    serve_mock: Option<u64>,
}

fn main() -> ExitCode {
    match run(Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("bench: error: {e}");
            ExitCode::FAILURE
        }
    }
}

/// The workspace root (this crate's parent directory).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .map_or_else(|| PathBuf::from("."), Path::to_path_buf)
}

/// `$CARGO_TARGET_DIR`, else the directory this binary was built into.
fn target_dir(root: &Path) -> PathBuf {
    if let Some(dir) = std::env::var_os("CARGO_TARGET_DIR").filter(|d| !d.is_empty()) {
        let dir = PathBuf::from(dir);
        return if dir.is_absolute() {
            dir
        } else {
            root.join(dir)
        };
    }
    std::env::current_exe()
        .ok()
        .and_then(|exe| Some(exe.parent()?.parent()?.to_path_buf()))
        .filter(|d| d.join("CACHEDIR.TAG").is_file() || d.join("release").is_dir())
        .unwrap_or_else(|| root.join("target"))
}

fn cargo() -> PathBuf {
    std::env::var_os("CARGO").map_or_else(|| PathBuf::from("cargo"), PathBuf::from)
}

/// Text output of a command, or `unknown`.
fn output_of(program: &Path, args: &[&str], dir: &Path) -> String {
    Command::new(program)
        .args(args)
        .current_dir(dir)
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned())
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "unknown".to_owned())
}

fn read_trimmed(path: &str) -> String {
    std::fs::read_to_string(path)
        .map(|s| s.trim().to_owned())
        .unwrap_or_else(|_| "unknown".to_owned())
}

fn cpu_model() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".to_owned())
}

fn load_average() -> String {
    read_trimmed("/proc/loadavg")
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

fn run(args: Args) -> Result<()> {
    if let Some(secs) = args.serve_mock {
        let threads = std::thread::available_parallelism().map_or(2, usize::from);
        let mock = Mock::start(threads)?;
        println!("http://{}/v1", mock.addr());
        std::thread::sleep(Duration::from_secs(secs.min(24 * 3600)));
        return Ok(());
    }
    let root = workspace_root();
    let target = target_dir(&root);
    let cargo = cargo();
    let nproc = std::thread::available_parallelism().map_or(2, usize::from);
    let mut plan = if args.quick {
        Plan::quick()
    } else {
        Plan::full()
    };
    if let Some(secs) = args.phase_seconds {
        if !(0.5..=120.0).contains(&secs) {
            return Err(fail("--phase-seconds must be between 0.5 and 120"));
        }
        plan.phase = Duration::from_secs_f64(secs);
    }
    plan.features = !args.skip_features;
    let runs = args
        .runs
        .unwrap_or(if args.quick { 1 } else { 3 })
        .clamp(1, 20);
    let micro_enabled = !args.skip_micro && !args.counted;

    if !args.skip_build {
        for what in [
            &["-p", "conclave"][..],
            &["-p", "conclave-bench", "--bin", "bare-forwarder"][..],
        ] {
            eprintln!("bench: cargo build --release {}", what.join(" "));
            let status = Command::new(&cargo)
                .args(["build", "--release"])
                .args(what)
                .arg("--manifest-path")
                .arg(root.join("Cargo.toml"))
                .status()?;
            if !status.success() {
                return Err(fail(format!(
                    "cargo build --release {} failed ({status})",
                    what.join(" ")
                )));
            }
        }
        if micro_enabled {
            eprintln!("bench: compiling the micro-benchmarks (cargo bench --no-run)");
            micro::build(&cargo, &root)?;
        }
    }
    let conclave_bin = args
        .conclave
        .clone()
        .unwrap_or_else(|| target.join("release").join("conclave"));
    if !conclave_bin.is_file() {
        return Err(fail(format!(
            "{} does not exist; build it or pass --conclave",
            conclave_bin.display()
        )));
    }
    let oha_bin = match &args.oha {
        Some(p) => p.clone(),
        None => oha::ensure(&cargo, &target)?,
    };
    let oha = Oha {
        bin: oha_bin,
        threads: nproc,
    };
    let oha_version = oha.version()?;

    let work = target.join("bench-work");
    std::fs::create_dir_all(&work)?;
    if args.counted {
        let mock = Mock::start(1)?;
        eprintln!(
            "bench: counting {} under callgrind ({WARM_UP} requests of warm-up, then {COUNTED})",
            conclave_bin.display(),
            WARM_UP = conclave_bench::counted::WARM_UP,
            COUNTED = conclave_bench::counted::COUNTED,
        );
        let extra_config = match &args.with_config {
            Some(path) => std::fs::read_to_string(path).map_err(|e| {
                conclave_bench::fail(format!("--with-config {}: {e}", path.display()))
            })?,
            None => String::new(),
        };
        let shape = conclave_bench::counted::Shape {
            stream: args.stream,
            cache_sim: args.cache_sim,
            extra_config,
        };
        let counts = conclave_bench::counted::run(&conclave_bin, &oha, mock.addr(), &work, shape)?;
        print!("{}", conclave_bench::counted::describe(&counts));
        return Ok(());
    }
    let cache = work.join("compile-cache");
    if cache.exists() {
        std::fs::remove_dir_all(&cache)?;
    }
    let mock = Mock::start(nproc)?;
    let config = suite::write_config(&work, mock.addr())?;
    let body_file = suite::write_bodies(&work)?;
    let forwarder_bin = Some(target.join("release").join("bare-forwarder")).filter(|p| p.is_file());
    if forwarder_bin.is_none() {
        eprintln!(
            "bench: no bare-forwarder in {}: the saturation floor is not measured",
            target.join("release").display()
        );
    }
    let setup = Setup {
        conclave_bin: conclave_bin.clone(),
        forwarder_bin,
        oha,
        mock,
        work: work.clone(),
        config,
        body_file,
        plan,
        ticks: conclave_bench::procs::clock_ticks(),
    };
    eprintln!(
        "bench: mock upstream on {}; conclave {}; {oha_version}; {runs} run(s) of {:?} phases",
        setup.mock.addr(),
        conclave_bin.display(),
        plan.phase
    );

    if args.team_only {
        for i in 0..runs {
            let say = |what: &str| eprintln!("bench: run {}: {what}", i + 1);
            let team = conclave_bench::team::run(&setup, &say)?;
            println!("{}", serde_json::to_string_pretty(&team)?);
        }
        return Ok(());
    }
    let load_start = load_average();
    eprintln!("bench: start-up with an emptied compile cache");
    let (cold, took) = suite::start_conclave(&setup, "cold")?;
    drop(cold);
    let startup_cold_ms = stats::ms(took);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let mut results = Vec::new();
    for i in 0..runs {
        let result = suite::run(&setup, &rt, i)?;
        results.push(serde_json::to_value(&result)?);
    }
    eprintln!(
        "bench: the mock answered {} chat requests",
        setup.mock.requests()
    );
    drop(setup);
    drop(rt);

    let micro: Option<Micro> = if micro_enabled {
        eprintln!("bench: criterion micro-benchmarks");
        Some(micro::run(
            &cargo,
            &root,
            &target.join("criterion"),
            args.quick,
        )?)
    } else {
        None
    };

    let median = stats::median_json(&results);
    let targets = report::targets(&median, micro.as_ref());
    let problems = report::problems(&results);
    let git = output_of(Path::new("git"), &["rev-parse", "--short", "HEAD"], &root);
    let dirty = !output_of(Path::new("git"), &["status", "--porcelain"], &root).eq("unknown");
    let meta = Meta {
        timestamp_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        command: std::env::args().collect::<Vec<_>>().join(" "),
        quick: args.quick,
        runs,
        nproc,
        cpu_model: cpu_model(),
        kernel: read_trimmed("/proc/sys/kernel/osrelease"),
        load_average_start: load_start,
        load_average_end: load_average(),
        conclave_version: output_of(&conclave_bin, &["--version"], &root),
        git_revision: if dirty { format!("{git}+changes") } else { git },
        rustc: output_of(Path::new("rustc"), &["--version"], &root),
        load_generator: oha_version,
        oha_worker_threads: nproc,
        mock_threads: nproc,
        phase_seconds: plan.phase.as_secs_f64(),
        note:
            "load generator, mock upstream and conclave run on the same machine and share its cores"
                .to_owned(),
    };
    let report = Report {
        meta,
        startup_cold_ms: Some(startup_cold_ms),
        median,
        runs: results,
        micro,
        targets,
        problems,
    };
    report::write(&args.out, &report)?;
    println!("{}", report::markdown(&report));
    eprintln!(
        "bench: wrote {} and {}",
        args.out.join("latest.json").display(),
        args.out.join("latest.md").display()
    );
    Ok(())
}
