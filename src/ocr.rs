//! Reading scanned resumes (`STOWAGE_OCR=true`): a PDF whose pages carry no text layer has
//! its pages rendered to images by poppler's `pdftoppm` and read by Tesseract.
//!
//! Both run inside the isolated extraction child (`stowage extract`), as its own children:
//! they inherit its address-space and CPU limits, get an empty environment, work in a
//! temporary directory removed afterwards, and are killed when the child's time is up. The
//! service finds both programs on its `PATH` and checks Tesseract's languages when it starts.

use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::text::{FailureReason, TextFailure};

/// Pages read from one document at most: a resume has a few; a 300-page scan is not one, and
/// its first pages say what it is.
pub const MAX_PAGES: u32 = 20;

/// The resolution pages are rendered at (Tesseract reads body text best at about 300 dpi).
const DPI: u32 = 300;

/// OCR as configured: the two programs and the languages to recognise.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ocr {
    /// Tesseract's language list, `+`-separated (`eng`, `eng+deu`).
    pub languages: String,
    pub pdftoppm: PathBuf,
    pub tesseract: PathBuf,
}

impl Ocr {
    /// Finds `pdftoppm` and `tesseract` on `PATH`; the languages are checked by [`Ocr::check`].
    pub fn locate(languages: &str) -> Ocr {
        Ocr {
            languages: languages.to_owned(),
            pdftoppm: on_path("pdftoppm").unwrap_or_else(|| PathBuf::from("pdftoppm")),
            tesseract: on_path("tesseract").unwrap_or_else(|| PathBuf::from("tesseract")),
        }
    }

    /// Whether OCR can run: both programs start, and Tesseract has every language asked for.
    /// The service refuses to start otherwise, saying what to install.
    pub fn check(&self) -> Result<(), String> {
        let listed = Command::new(&self.tesseract)
            .arg("--list-langs")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "STOWAGE_OCR needs Tesseract ({}: {e}); install tesseract-ocr",
                    self.tesseract.display()
                )
            })?;
        let installed = String::from_utf8_lossy(&listed.stdout);
        let installed: Vec<&str> = installed.lines().skip(1).map(str::trim).collect();
        // `osd` turns pages scanned sideways or upside down (`--psm 1`).
        for language in self.languages.split('+').chain(["osd"]) {
            if !installed.contains(&language) {
                return Err(format!(
                    "STOWAGE_OCR_LANGUAGES names '{language}', which Tesseract does not have \
                     (installed: {}); install tesseract-ocr-{language}",
                    installed.join(", ")
                ));
            }
        }
        Command::new(&self.pdftoppm)
            .arg("-v")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| {
                format!(
                    "STOWAGE_OCR needs poppler's pdftoppm ({}: {e}); install poppler-utils",
                    self.pdftoppm.display()
                )
            })?;
        Ok(())
    }

    /// The arguments that hand this configuration to `stowage extract`.
    pub fn child_args(&self) -> Vec<OsString> {
        vec![
            "--ocr-languages".into(),
            self.languages.clone().into(),
            "--ocr-pdftoppm".into(),
            self.pdftoppm.clone().into(),
            "--ocr-tesseract".into(),
            self.tesseract.clone().into(),
        ]
    }
}

/// Whether a language list is one Tesseract could name: `+`-separated names of letters,
/// digits and `_` (`eng`, `chi_sim`, `eng+deu`).
pub fn valid_languages(raw: &str) -> bool {
    !raw.is_empty()
        && raw
            .split('+')
            .all(|l| !l.is_empty() && l.chars().all(|c| c.is_ascii_alphanumeric() || c == '_'))
}

fn on_path(program: &str) -> Option<PathBuf> {
    std::env::split_paths(&std::env::var_os("PATH")?)
        .map(|dir| dir.join(program))
        .find(|path| path.is_file())
}

/// The text of a scanned PDF's pages (at most [`MAX_PAGES`]), read by OCR before `deadline`.
pub fn read_pages(ocr: &Ocr, pdf: &[u8], deadline: Instant) -> Result<String, TextFailure> {
    let dir = tempfile::tempdir().map_err(|e| internal(format!("a temporary directory: {e}")))?;
    let input = dir.path().join("document.pdf");
    std::fs::write(&input, pdf).map_err(|e| internal(format!("writing the document: {e}")))?;
    let prefix = dir.path().join("page");
    let mut render = Command::new(&ocr.pdftoppm);
    render
        .args([
            "-gray",
            "-r",
            &DPI.to_string(),
            "-l",
            &MAX_PAGES.to_string(),
        ])
        .arg(&input)
        .arg(&prefix);
    let rendered = run(render, deadline, "pdftoppm")?;
    if !rendered.success {
        return Err(TextFailure::new(
            FailureReason::Unreadable,
            format!(
                "the PDF's pages could not be rendered for OCR: {}",
                rendered.stderr.trim()
            ),
        ));
    }
    let mut pages: Vec<PathBuf> = std::fs::read_dir(dir.path())
        .map_err(|e| internal(format!("listing pages: {e}")))?
        .filter_map(|entry| entry.ok().map(|e| e.path()))
        .filter(|path| path.extension().is_some_and(|e| e == "pgm"))
        .collect();
    // pdftoppm pads page numbers to the same width, so names sort in page order.
    pages.sort();
    let mut text = String::new();
    for page in &pages {
        let read = run(tesseract(ocr, page), deadline, "tesseract")?;
        if !read.success {
            return Err(TextFailure::new(
                FailureReason::Unreadable,
                format!("OCR failed on a page: {}", read.stderr.trim()),
            ));
        }
        if !text.is_empty() {
            text.push_str("\n\n");
        }
        text.push_str(&read.stdout);
    }
    if !text.chars().any(char::is_alphanumeric) {
        return Err(TextFailure::new(
            FailureReason::NoTextLayer,
            "the PDF has no text layer, and OCR recognised no text on its page images",
        ));
    }
    Ok(text)
}

fn tesseract(ocr: &Ocr, page: &Path) -> Command {
    let mut command = Command::new(&ocr.tesseract);
    command
        .arg(page)
        .arg("stdout")
        .args(["-l", &ocr.languages, "--dpi", &DPI.to_string()])
        // Page segmentation with orientation detection: a page scanned sideways or upside
        // down is turned before it is read (10–30 % more time than without).
        .args(["--psm", "1"])
        // One thread: the child's limits are for one document, and replicas run several.
        .env("OMP_THREAD_LIMIT", "1");
    command
}

struct Finished {
    success: bool,
    stdout: String,
    stderr: String,
}

/// Runs `command` with an empty environment (but what it was given) until `deadline`; past it
/// the program is killed and the document fails as too slow.
fn run(mut command: Command, deadline: Instant, what: &str) -> Result<Finished, TextFailure> {
    let mut child = command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(|e| internal(format!("{what} could not be started: {e}")))?;
    let mut stdout = child.stdout.take().expect("stdout is piped");
    let mut stderr = child.stderr.take().expect("stderr is piped");
    let out = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = stdout.read_to_end(&mut bytes);
        bytes
    });
    let err = std::thread::spawn(move || {
        let mut bytes = Vec::new();
        let _ = (&mut stderr).take(4096).read_to_end(&mut bytes);
        bytes
    });
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            Ok(None) => {
                let _ = child.kill();
                let _ = child.wait();
                return Err(TextFailure::new(
                    FailureReason::Timeout,
                    "OCR of the PDF's pages took longer than the extraction may",
                ));
            }
            Err(e) => return Err(internal(format!("waiting for {what}: {e}"))),
        }
    };
    let stdout = out.join().unwrap_or_default();
    let stderr = err.join().unwrap_or_default();
    Ok(Finished {
        success: status.success(),
        stdout: String::from_utf8_lossy(&stdout).into_owned(),
        stderr: String::from_utf8_lossy(&stderr).into_owned(),
    })
}

fn internal(message: String) -> TextFailure {
    TextFailure::new(
        FailureReason::Unreadable,
        format!("OCR could not run: {message}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_lists_are_tesseract_names() {
        for good in ["eng", "eng+deu", "chi_sim", "eng+chi_tra"] {
            assert!(valid_languages(good), "{good}");
        }
        for bad in ["", "eng+", "+eng", "eng deu", "../eng", "eng;rm"] {
            assert!(!valid_languages(bad), "{bad}");
        }
    }
}
