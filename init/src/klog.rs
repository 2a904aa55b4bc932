//! PID 1's logger and boot timeline.
//!
//! Every record goes to `/dev/kmsg` (so `dmesg` has it), to the console for
//! warnings, errors and timeline steps, and to a bounded log file (first on
//! `/run`, then on `VZDATA` once it is mounted). Lines written before a file is
//! available are kept in memory and flushed when one is.

use std::fmt::Write as _;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Where the console shell finds the appliance log (a symlink to the real file).
pub const LOG_LINK: &str = "/run/vz/log";
/// Where the boot timeline is kept for `status`.
pub use vzcommon::run::TIMELINE_FILE;
/// The log file rotates to `<name>.1` when it grows past this.
pub const LOG_MAX_BYTES: u64 = 1 << 20;

struct Sinks {
    kmsg: Option<File>,
    console: Option<File>,
    file: Option<(PathBuf, File)>,
    pending: Vec<String>,
    timeline: Vec<(u64, String)>,
}

static SINKS: Mutex<Sinks> = Mutex::new(Sinks {
    kmsg: None,
    console: None,
    file: None,
    pending: Vec::new(),
    timeline: Vec::new(),
});

struct Logger;
static LOGGER: Logger = Logger;

/// Milliseconds since the kernel started (CLOCK_BOOTTIME).
pub fn since_boot_ms() -> u64 {
    let ts = rustix::time::clock_gettime(rustix::time::ClockId::Boottime);
    (ts.tv_sec as u64) * 1000 + (ts.tv_nsec as u64) / 1_000_000
}

fn lock() -> std::sync::MutexGuard<'static, Sinks> {
    // A poisoned lock only means another thread panicked while logging; the sinks
    // are still usable, and PID 1 must keep logging.
    SINKS.lock().unwrap_or_else(|e| e.into_inner())
}

/// Installs the logger. Safe to call again after the root switch: it reopens
/// `/dev/kmsg` and `/dev/console`.
pub fn install() {
    {
        let mut s = lock();
        s.kmsg = OpenOptions::new().write(true).open("/dev/kmsg").ok();
        s.console = OpenOptions::new().write(true).open("/dev/console").ok();
    }
    // set_logger fails only if already set (after exec it is not).
    let _ = log::set_logger(&LOGGER);
    log::set_max_level(log::LevelFilter::Info);
}

/// Sends every following line to `path` too (appending, bounded), after writing
/// the lines kept so far; points [`LOG_LINK`] at it.
pub fn log_to_file(path: &Path) -> std::io::Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir)?;
    }
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut s = lock();
    for line in s.pending.drain(..) {
        let _ = file.write_all(line.as_bytes());
    }
    s.file = Some((path.to_owned(), file));
    drop(s);
    let _ = std::fs::remove_file(LOG_LINK);
    std::os::unix::fs::symlink(path, LOG_LINK)
}

/// Stops writing to the log file (before its filesystem is unmounted).
pub fn close_file() {
    lock().file = None;
}

/// Writes a line straight to the console (used for the `ready` beacon).
pub fn console_line(line: &str) {
    let mut s = lock();
    if let Some(c) = s.console.as_mut() {
        let _ = writeln!(c, "{line}");
    }
}

/// Records a boot step in the timeline (console, kmsg, log and [`TIMELINE_FILE`]).
pub fn step(what: &str) {
    let ms = since_boot_ms();
    let mut s = lock();
    s.timeline.push((ms, what.to_owned()));
    let mut text = String::new();
    for (ms, what) in &s.timeline {
        let r = vzcommon::run::TimelineRecord {
            ms: *ms,
            step: what.clone(),
        };
        let _ = writeln!(text, "{}", r.render());
    }
    drop(s);
    let _ = std::fs::write(TIMELINE_FILE, text);
    log::info!(target: "timeline", "{ms:>6} ms  {what}");
}

/// Restores the timeline recorded before the root switch (read back from
/// [`TIMELINE_FILE`], which lives on the moved `/run`).
pub fn reload_timeline() {
    let Ok(text) = std::fs::read_to_string(TIMELINE_FILE) else {
        return;
    };
    let mut s = lock();
    s.timeline = parse_timeline(&text);
}

/// Parses the lines of a timeline file (format: `vzcommon::run::TimelineRecord`).
pub fn parse_timeline(text: &str) -> Vec<(u64, String)> {
    vzcommon::run::parse_lines(text, vzcommon::run::TimelineRecord::parse)
        .into_iter()
        .map(|r| (r.ms, r.step))
        .collect()
}

fn rotate_if_large(s: &mut Sinks) {
    let Some((path, file)) = s.file.as_ref() else {
        return;
    };
    let Ok(meta) = file.metadata() else { return };
    if meta.len() < LOG_MAX_BYTES {
        return;
    }
    let path = path.clone();
    let mut old = path.clone().into_os_string();
    old.push(".1");
    let _ = std::fs::rename(&path, &old);
    if let Ok(f) = OpenOptions::new().create(true).append(true).open(&path) {
        s.file = Some((path, f));
    }
}

impl log::Log for Logger {
    fn enabled(&self, meta: &log::Metadata<'_>) -> bool {
        meta.level() <= log::Level::Info
    }

    fn log(&self, record: &log::Record<'_>) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let ms = since_boot_ms();
        let level = record.level();
        let timeline = record.target() == "timeline";
        let tag = match level {
            log::Level::Error => "error: ",
            log::Level::Warn => "warning: ",
            _ => "",
        };
        let prio = match level {
            log::Level::Error => 3,
            log::Level::Warn => 4,
            _ => 6,
        };
        let msg = record.args().to_string();
        let mut s = lock();
        if let Some(k) = s.kmsg.as_mut() {
            let _ = writeln!(k, "<{prio}>init: {tag}{msg}");
        }
        if timeline || level <= log::Level::Warn {
            if let Some(c) = s.console.as_mut() {
                let label = if timeline { "boot " } else { "" };
                let _ = writeln!(c, "init: {label}{tag}{msg}");
            }
        }
        append(&mut s, ms, "init", &format!("{tag}{msg}"));
    }

    fn flush(&self) {}
}

/// Appends `<seconds> <who>: <msg>` to the log file, or keeps it (bounded)
/// until there is one.
fn append(s: &mut Sinks, ms: u64, who: &str, msg: &str) {
    let line = format!("{:>4}.{:03} {who}: {msg}\n", ms / 1000, ms % 1000);
    match s.file.as_mut() {
        Some((_, f)) => {
            let _ = f.write_all(line.as_bytes());
            rotate_if_large(s);
        }
        None => {
            if s.pending.len() < 4096 {
                s.pending.push(line);
            }
        }
    }
}

/// Appends a line produced by a supervised service to the log (and kmsg).
pub fn service_line(service: &str, line: &str) {
    let ms = since_boot_ms();
    let mut s = lock();
    if let Some(k) = s.kmsg.as_mut() {
        let _ = writeln!(k, "<6>{service}: {line}");
    }
    append(&mut s, ms, service, line);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timeline_round_trips_through_its_file_format() {
        let text = "    120 modules loaded (12)\n   1503 mounted VZROOT read-only\n";
        let t = parse_timeline(text);
        assert_eq!(
            t,
            vec![
                (120, "modules loaded (12)".to_owned()),
                (1503, "mounted VZROOT read-only".to_owned())
            ]
        );
    }

    #[test]
    fn timeline_parser_skips_garbage() {
        assert!(parse_timeline("x y\n\n12\n").is_empty());
    }
}
