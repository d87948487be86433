//! The live dashboard of `sluice run --ui`, in a real headless Chromium.
//!
//! A word count reads lines from its stdin, fed by the test for as long as
//! it looks; the browser opens the dashboard and the test checks what a
//! person would see: the four charts drawn, the batch table filling, the
//! page updating on its own (without reloading), the job graph with its
//! rates, an operator's detail panel opening and closing. What the page
//! shows is checked against the figures the host serves, and those against
//! the number of lines the test fed.
//!
//! Needs Debian's `chromium` and `chromium-driver` (see
//! [`sluice_tests::browser`]). Leaves a screenshot in `target/dashboard.png`,
//! and at `$SLUICE_DASHBOARD_SHOT` (relative to the workspace) when that is
//! set, to refresh the README's picture.

use serde_json::Value;
use sluice_tests::browser::Browser;
use sluice_tests::ui::UiJob;
use std::path::{Path, PathBuf};
use std::process::ChildStdin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// How long each wait may take: generous, as the machine may be busy.
const WAIT: Duration = Duration::from_secs(60);

/// The four charts of the page, by id.
const CHARTS: [&str; 4] = [
    "chart-rate",
    "chart-scheduling",
    "chart-processing",
    "chart-total",
];

/// The word count the dashboard shows: stdin → split words (Wasm) →
/// count per word per second → discard.
fn job_toml() -> String {
    format!(
        r#"name = "dashboard"

[batch]
interval = "100ms"

[[sources]]
kind = "stdin"

[[operators]]
name = "split"
plugin = {split}

[[operators]]
name = "counts"
builtin = "aggregate"
config = {{ function = "count", window = "tumbling", length = "1s", time = "processing" }}

[[sinks]]
kind = "discard"
"#,
        split = crate::lit(sluice_tests::guests::SPLIT_WORDS),
    )
}

/// Feeds the job's stdin on a thread of its own: 200 lines of words every
/// 100 ms until told to stop.
struct Feeder {
    stop: Arc<AtomicBool>,
    thread: JoinHandle<Result<(ChildStdin, u64), String>>,
}

impl Feeder {
    fn start(mut stdin: ChildStdin) -> Feeder {
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = stop.clone();
        let thread = std::thread::spawn(move || {
            use std::io::Write;
            let mut fed = 0u64;
            while !stopped.load(Ordering::Relaxed) {
                let mut chunk = String::new();
                for _ in 0..200 {
                    fed += 1;
                    chunk.push_str(&format!(
                        "line {fed}: the quick brown fox jumps over the lazy dog {}\n",
                        fed % 7
                    ));
                }
                // A job that died stops the feeding, quietly: the test
                // says so when it stops the feeder (or has failed already).
                if let Err(e) = stdin
                    .write_all(chunk.as_bytes())
                    .and_then(|()| stdin.flush())
                {
                    return Err(format!("feeding the job after {fed} lines: {e}"));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
            Ok((stdin, fed))
        });
        Feeder { stop, thread }
    }

    /// Stops feeding; gives back the (still open) input and the number of
    /// lines written to it.
    fn stop(self) -> (ChildStdin, u64) {
        self.stop.store(true, Ordering::Relaxed);
        let fed = self.thread.join().expect("the feeding thread");
        fed.unwrap_or_else(|e| panic!("{e}"))
    }
}

/// The workspace's root: where relative paths in the environment start
/// (tests themselves run in `tests/`).
fn workspace() -> &'static Path {
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    manifest.parent().unwrap_or(manifest)
}

/// Where the screenshot goes: `$CARGO_TARGET_DIR/dashboard.png`, or the
/// workspace's `target/dashboard.png`.
fn screenshot_path() -> PathBuf {
    let target = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) => workspace().join(dir), // an absolute path stays as it is
        None => workspace().join("target"),
    };
    target.join("dashboard.png")
}

/// Reads the page's counter of successful polls.
fn updates(b: &Browser) -> u64 {
    let v = b.execute("return document.body.dataset.updates;", &[]);
    v.as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("body's data-updates is not a number: {v}"))
}

/// The batch numbers in the page's batch table, top (newest) first.
fn table_batches(b: &Browser) -> Vec<u64> {
    let v = b.execute(
        "return Array.from(document.querySelectorAll('#batches tr.batch-row'))
             .map((r) => r.dataset.batch);",
        &[],
    );
    v.as_array()
        .unwrap_or_else(|| panic!("batch rows: {v}"))
        .iter()
        .map(|n| {
            n.as_str()
                .and_then(|s| s.parse().ok())
                .unwrap_or_else(|| panic!("a batch row's data-batch is {n}"))
        })
        .collect()
}

/// A rate as the page writes it (`950/s`, `2.0k/s`, `1.2M/s`, `—`), in
/// records per second; `None` for `—` or anything else.
fn parse_rate(text: &str) -> Option<f64> {
    let number = text.trim().strip_suffix("/s")?;
    let (digits, scale) = match number.chars().last()? {
        'k' => (&number[..number.len() - 1], 1e3),
        'M' => (&number[..number.len() - 1], 1e6),
        'G' => (&number[..number.len() - 1], 1e9),
        _ => (number, 1.0),
    };
    digits.parse::<f64>().ok().map(|n| n * scale)
}

/// `n` as the page writes counts: `12,345`.
fn with_commas(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::new();
    for (i, c) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// The value of the page's total labelled `label` (`records in`, ...).
fn page_total(b: &Browser, label: &str) -> Option<String> {
    let v = b.execute(
        "for (const t of document.querySelectorAll('#totals .total')) {
             if (t.querySelector('.k').textContent === arguments[0]) {
                 return t.querySelector('.v').textContent;
             }
         }
         return null;",
        &[Value::from(label)],
    );
    v.as_str().map(str::to_string)
}

/// The operator `name` in the host's figures.
fn operator<'f>(figures: &'f Value, name: &str) -> &'f Value {
    figures["stages"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|s| s["operators"].as_array().into_iter().flatten())
        .find(|op| op["name"] == name)
        .unwrap_or_else(|| panic!("no operator {name} in the figures: {figures:#}"))
}

#[test]
fn the_dashboard_fills_and_updates_in_a_real_browser() {
    let started = Instant::now();
    let dir = tempfile::tempdir().unwrap();
    let job = sluice_tests::write_job(dir.path(), "dashboard.toml", &job_toml());
    let mut ui = UiJob::start(Path::new(env!("CARGO_BIN_EXE_sluice-under-test")), &job);
    let feeder = Feeder::start(ui.stdin.take().expect("the job's stdin"));

    let mut browser = Browser::start();
    browser.set_timeout(WAIT);
    browser.goto(&format!("{}/", ui.base));

    // The four charts draw a series, and the batch table fills.
    for chart in CHARTS {
        let css = format!("#{chart} path.series");
        browser.wait_until(WAIT, &format!("a series drawn in #{chart}"), |b| {
            b.find(&css)
                .attribute("d")
                .is_some_and(|d| d.trim().starts_with('M') && d.len() > 10)
        });
    }
    browser.find("#batches tr.batch-row");
    browser.wait_until(WAIT, "a few rows in the batch table", |b| {
        b.find_all("#batches tr.batch-row").len() >= 5
    });

    // The page updates on its own: more polls, newer batches, same page.
    browser.execute("window.__sluiceMarker = 'still here';", &[]);
    let updates_before = updates(&browser);
    let newest_before = table_batches(&browser)[0];
    std::thread::sleep(Duration::from_secs(3));
    browser.wait_until(WAIT, "data-updates to grow and a newer batch on top", |b| {
        let newest = table_batches(b).first().copied().unwrap_or(0);
        updates(b) > updates_before && newest > newest_before
    });
    let navigations = browser.execute(
        "return window.performance.getEntriesByType('navigation').length;",
        &[],
    );
    assert_eq!(navigations, 1, "the page was navigated to more than once");
    let marker = browser.execute("return window.__sluiceMarker || null;", &[]);
    assert_eq!(
        marker, "still here",
        "the page was reloaded: the marker set on window is gone"
    );
    let rows = table_batches(&browser);
    assert!(
        rows.windows(2).all(|w| w[0] > w[1]),
        "the batch table is not newest first, without repeats: {rows:?}"
    );

    // The job graph: one source, the two operators in order, one sink.
    let names = |kind: &str| -> Vec<String> {
        browser
            .find_all(&format!(".node[data-kind=\"{kind}\"]"))
            .iter()
            .map(|n| n.attribute("data-name").unwrap_or_default())
            .collect()
    };
    assert_eq!(names("source").len(), 1, "sources: {:?}", names("source"));
    assert_eq!(names("operator"), ["split", "counts"]);
    assert_eq!(names("sink").len(), 1, "sinks: {:?}", names("sink"));
    browser.wait_until(WAIT, "a non-zero rate on the source node", |b| {
        let rate = b.find(".node[data-kind=\"source\"] .n-rate").text();
        parse_rate(&rate).is_some_and(|r| r > 0.0)
    });

    // The split operator's detail: call times and partitions, then closed.
    let detail = browser.find("#operator-detail");
    assert!(
        !detail.displayed(),
        "the operator detail shows before a click"
    );
    browser
        .find(".node[data-kind=\"operator\"][data-name=\"split\"]")
        .click();
    browser.wait_until(WAIT, "#operator-detail to show after a click", |_| {
        detail.displayed()
    });
    let title = browser.find("#detail-title").text();
    assert!(title.starts_with("split"), "the detail is of {title:?}");
    browser.wait_until(WAIT, "a call-time histogram with bars", |b| {
        !b.find_all("#operator-detail svg.hist rect.hbar").is_empty()
    });
    let figures = ui.figures();
    let split = operator(&figures, "split");
    let bars = browser
        .find_all("#operator-detail svg.hist rect.hbar")
        .len();
    let buckets = split["call"]["buckets"].as_array().map_or(0, Vec::len);
    assert_eq!(bars, buckets, "one bar per call-time bucket: {split:#}");
    let cells = browser.find_all("#operator-detail .pcell").len();
    let partitions = split["partitions"].as_array().map_or(0, Vec::len);
    assert!(cells > 0, "no partition cells in the detail");
    assert_eq!(
        cells, partitions,
        "one cell per partition of split: {split:#}"
    );

    // The picture, with the detail open, from the top of the page.
    browser.execute("window.scrollTo(0, 0);", &[]);
    std::thread::sleep(Duration::from_millis(300));
    let shot = screenshot_path();
    browser.screenshot(&shot);
    let size = std::fs::metadata(&shot).map(|m| m.len()).unwrap_or(0);
    assert!(
        size > 20 * 1024,
        "{} is only {size} bytes: a blank page?",
        shot.display()
    );
    let png = std::fs::read(&shot).unwrap();
    assert!(png.starts_with(b"\x89PNG\r\n\x1a\n"), "not a PNG");
    if let Some(extra) = std::env::var_os("SLUICE_DASHBOARD_SHOT") {
        browser.screenshot(&workspace().join(extra));
    }

    browser.find("#close-detail").click();
    browser.wait_until(WAIT, "#operator-detail to hide after closing it", |_| {
        !detail.displayed()
    });

    // What the page shows is what the host serves: every batch in the
    // table is one of the host's latest batches, with the same records.
    let rows = browser.execute(
        "return Array.from(document.querySelectorAll('#batches tr.batch-row'))
             .map((r) => [r.dataset.batch, r.cells[1].textContent]);",
        &[],
    );
    let figures = ui.figures();
    let served: Vec<&Value> = figures["batches"].as_array().unwrap().iter().collect();
    let rows = rows.as_array().unwrap();
    assert!(!rows.is_empty(), "the batch table emptied");
    for row in rows {
        let (batch, records) = (row[0].as_str().unwrap(), row[1].as_str().unwrap());
        let batch: u64 = batch.parse().unwrap();
        let host = served
            .iter()
            .find(|b| b["batch"] == batch)
            .unwrap_or_else(|| panic!("batch {batch} of the page is not in the host's figures"));
        let host_records = host["records"].as_u64().unwrap();
        assert_eq!(
            records,
            with_commas(host_records),
            "batch {batch}: the page and the host disagree on its records"
        );
    }

    // And the host counts what was fed: stop feeding, let the job catch
    // up; the host and then the page show exactly the lines written.
    let (stdin, fed) = feeder.stop();
    ui.stdin = Some(stdin);
    assert!(fed >= 1000, "only {fed} lines fed");
    // (`split` counts a batch's lines once it has run on it, a little
    // after the source counted them.)
    let caught_up = ui.wait_for(WAIT, |f| {
        f["totals"]["records_in"] == fed && operator(f, "split")["records_in"] == fed
    });
    assert_eq!(caught_up["sources"][0]["records"], fed, "{caught_up:#}");
    let shown = with_commas(fed);
    browser.wait_until(WAIT, &format!("the page to show {shown} records in"), |b| {
        page_total(b, "records in").as_deref() == Some(shown.as_str())
    });
    let split = operator(&caught_up, "split");
    assert!(
        split["records_out"].as_u64().unwrap() >= fed * 10,
        "split made at least ten words of each line: {split:#}"
    );

    drop(browser);
    let status = ui.finish();
    assert!(status.success(), "sluice run --ui ended with {status}");
    eprintln!(
        "dashboard: {fed} lines fed, screenshot {} ({size} bytes), {:.1?}",
        shot.display(),
        started.elapsed()
    );
}

/// A job of 64 partitions and 20 Wasm operators in a chain: the page must
/// draw all of it and keep redrawing well within its poll.
#[test]
fn the_dashboard_stays_responsive_with_64_partitions_and_20_operators() {
    let dir = tempfile::tempdir().unwrap();
    let mut toml = "name = \"wide\"\nworkers = 2\npartitions = 64\n[batch]\ninterval = \"100ms\"\n\
                    [[sources]]\nkind = \"stdin\"\n"
        .to_string();
    for i in 1..=20 {
        toml.push_str(&format!(
            "[[operators]]\nname = \"upper-{i}\"\nplugin = {}\n",
            crate::lit(sluice_tests::guests::UPPERCASE)
        ));
    }
    toml.push_str("[[sinks]]\nkind = \"discard\"\n");
    let job = sluice_tests::write_job(dir.path(), "wide.toml", &toml);
    let mut running = UiJob::start(Path::new(env!("CARGO_BIN_EXE_sluice-under-test")), &job);
    let feeder = Feeder::start(running.stdin.take().expect("stdin"));
    let browser = Browser::start();
    browser.goto(&format!("{}/", running.base));
    browser.wait_until(WAIT, "20 operator nodes", |b| {
        b.find_all(".node[data-kind=\"operator\"]").len() == 20
    });
    // Ten redraws with records flowing through all 64 partitions.
    let first = updates(&browser);
    browser.wait_until(WAIT, "ten more updates", |b| updates(b) >= first + 10);
    let render_ms: f64 = browser
        .execute("return document.body.dataset.renderMs;", &[])
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("the page tells its redraw time");
    // The page polls every second; a redraw must leave it idle most of that.
    assert!(render_ms < 250.0, "a redraw took {render_ms} ms");
    // The detail of the last operator shows every partition.
    browser
        .find(".node[data-kind=\"operator\"][data-name=\"upper-20\"]")
        .click();
    browser.wait_until(WAIT, "64 partition cells", |b| {
        b.find_all("#operator-detail .pcell").len() == 64
    });
    let figures = running.figures();
    let stage = &figures["stages"][0]["operators"];
    assert_eq!(stage.as_array().unwrap().len(), 20, "{figures:#}");
    let busy: Vec<u64> = stage[19]["partitions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["records_in"].as_u64().unwrap())
        .collect();
    assert_eq!(busy.len(), 64);
    assert!(
        busy.iter().all(|n| *n > 0),
        "every partition had records: {busy:?}"
    );
    eprintln!("64 partitions, 20 operators: a redraw took {render_ms} ms");
    drop(browser);
    let (stdin, _) = feeder.stop();
    drop(stdin);
    let status = running.child.wait().unwrap();
    assert!(status.success(), "{status}");
}

/// `sluice serve`'s `/ui`: a tenant signs in with its token and sees its
/// own jobs, never another tenant's; a wrong token is refused with the
/// server's reason.
#[test]
fn a_tenant_signs_in_and_sees_only_its_own_jobs() {
    use sluice::serve::tenant::{hash_token, to_hex};
    let tenants = format!(
        "admin_token_sha256 = \"{}\"\n\
         [[tenants]]\nname = \"alpha\"\ntoken_sha256 = \"{}\"\n\
         [[tenants]]\nname = \"beta\"\ntoken_sha256 = \"{}\"\n",
        to_hex(&hash_token("admin-token")),
        to_hex(&hash_token("alpha-token")),
        to_hex(&hash_token("beta-token")),
    );
    let server = crate::server::Server::start(&tenants);
    let job = |name: &str| {
        format!(
            "name = \"{name}\"\nworkers = 1\n[batch]\ninterval = \"100ms\"\n\
             [[sources]]\nkind = \"generator\"\nrate = 200\nvalue_size = 20\n\
             [[operators]]\nplugin = \"uppercase\"\n[[sinks]]\nkind = \"discard\"\n"
        )
    };
    for token in ["alpha-token", "beta-token"] {
        server.upload(token, "uppercase", sluice_tests::guests::UPPERCASE);
    }
    let ours = [
        server.submit("alpha-token", &job("alpha-one")),
        server.submit("alpha-token", &job("alpha-two")),
    ];
    let theirs = server.submit("beta-token", &job("beta-only"));

    let browser = Browser::start();
    browser.goto(&format!("{}/ui", server.base));
    browser.wait_until(WAIT, "the sign-in form", |b| b.find("#signin").displayed());
    browser.find("#token").type_text("wrong-token");
    browser.find("#sign-in").click();
    browser.wait_until(WAIT, "the server's refusal", |b| {
        b.find("#signin-error").displayed()
            && b.find("#signin-error").text().contains("unknown token")
    });
    browser.find("#token").clear();
    browser.find("#token").type_text("alpha-token");
    browser.find("#sign-in").click();
    browser.wait_until(WAIT, "alpha's dashboard", |b| {
        !b.find("#signin").displayed() && b.find("#job-name").text().starts_with("alpha-")
    });
    let listed: Vec<String> = browser
        .find_all("#job option")
        .iter()
        .map(|o| o.attribute("value").unwrap_or_default())
        .collect();
    let mut want = ours.to_vec();
    want.sort();
    let mut got = listed.clone();
    got.sort();
    assert_eq!(got, want, "alpha's jobs only, never {theirs}");
    // Choosing the other job shows it, live.
    let shown = browser.find("#job-name").text();
    let other = if shown == "alpha-one" {
        &ours[1]
    } else {
        &ours[0]
    };
    browser
        .find(&format!("#job option[value=\"{other}\"]"))
        .click();
    let name = if shown == "alpha-one" {
        "alpha-two"
    } else {
        "alpha-one"
    };
    browser.wait_until(WAIT, "the other job's figures", |b| {
        b.find("#job-name").text() == name
    });
    let before = updates(&browser);
    browser.wait_until(WAIT, "updates of the chosen job", |b| {
        updates(b) >= before + 2
    });
    let page = browser.execute("return document.body.innerText;", &[]);
    assert!(!page.as_str().unwrap().contains("beta-only"), "{page}");
    // A new version of the operator shows on the timeline, where it was
    // decided.
    let wasm = std::fs::read(sluice_tests::guests::UPPERCASE).unwrap();
    let put = server.put(
        &format!("/v1/jobs/{other}/operators/uppercase"),
        "alpha-token",
        &wasm,
    );
    assert_eq!(put.status, 200, "{}", put.text);
    browser.wait_until(WAIT, "the adopted version on the timeline", |b| {
        b.find_all("#versions g.mark.adopted circle")
            .iter()
            .any(|c| {
                let cx: Option<f64> = c.attribute("cx").and_then(|x| x.parse().ok());
                cx.is_some_and(f64::is_finite)
            })
    });
    assert!(
        browser.find("#versions").text().contains("v2"),
        "{}",
        browser.find("#versions").text()
    );
    // Signing out returns to the form.
    browser.find("#sign-out").click();
    browser.wait_until(WAIT, "the sign-in form again", |b| {
        b.find("#signin").displayed()
    });
}
