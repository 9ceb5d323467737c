//! Container logs: the monitor writes each line of output as a JSON object (Docker's
//! json-file format: `log`, `stream`, `time`) and rotates the file by size; `berth logs`
//! reads them back, oldest rotated file first, and can follow new lines.

use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::{Deserialize, Serialize};

use crate::container::LogOptions;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    Stdout,
    Stderr,
}

/// One line of output.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Entry {
    pub log: String,
    pub stream: Stream,
    pub time: String,
}

/// Docker cuts lines longer than this into several entries.
const MAX_LINE: usize = 16 * 1024;

pub struct LogWriter {
    path: PathBuf,
    file: File,
    size: u64,
    opts: LogOptions,
    /// Output not yet ended by a newline, per stream.
    partial: [Vec<u8>; 2],
}

fn rotated(path: &Path, n: u32) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

impl LogWriter {
    pub fn open(path: &Path, opts: LogOptions) -> io::Result<LogWriter> {
        let file = OpenOptions::new().create(true).append(true).open(path)?;
        let size = file.metadata()?.len();
        Ok(LogWriter {
            path: path.to_path_buf(),
            file,
            size,
            opts,
            partial: [Vec::new(), Vec::new()],
        })
    }

    /// Records output of `stream`; complete lines are written at once, a trailing partial
    /// line waits for its end (or for `flush`).
    pub fn write(&mut self, stream: Stream, data: &[u8]) -> io::Result<()> {
        let idx = stream as usize;
        self.partial[idx].extend_from_slice(data);
        let mut buf = std::mem::take(&mut self.partial[idx]);
        let mut start = 0;
        while let Some(pos) = buf[start..].iter().position(|b| *b == b'\n') {
            let end = start + pos + 1;
            for chunk in buf[start..end].chunks(MAX_LINE) {
                self.entry(stream, chunk)?;
            }
            start = end;
        }
        while buf.len() - start >= MAX_LINE {
            self.entry(stream, &buf[start..start + MAX_LINE])?;
            start += MAX_LINE;
        }
        buf.drain(..start);
        self.partial[idx] = buf;
        Ok(())
    }

    /// Writes whatever partial lines remain (the process has exited).
    pub fn flush(&mut self) -> io::Result<()> {
        for stream in [Stream::Stdout, Stream::Stderr] {
            let rest = std::mem::take(&mut self.partial[stream as usize]);
            if !rest.is_empty() {
                self.entry(stream, &rest)?;
            }
        }
        Ok(())
    }

    fn entry(&mut self, stream: Stream, text: &[u8]) -> io::Result<()> {
        let entry = Entry {
            log: String::from_utf8_lossy(text).into_owned(),
            stream,
            time: humantime::format_rfc3339_nanos(SystemTime::now()).to_string(),
        };
        let mut line = serde_json::to_vec(&entry).expect("log entries serialize");
        line.push(b'\n');
        if self.size > 0 && self.size + line.len() as u64 > self.opts.max_size {
            self.rotate()?;
        }
        self.file.write_all(&line)?;
        self.size += line.len() as u64;
        Ok(())
    }

    /// `log` -> `log.1` -> ... -> `log.(max_files-1)`, dropping the oldest.
    fn rotate(&mut self) -> io::Result<()> {
        let keep = self.opts.max_files.saturating_sub(1);
        if keep == 0 {
            self.file.set_len(0)?;
        } else {
            for n in (1..keep).rev() {
                let from = rotated(&self.path, n);
                if from.exists() {
                    fs::rename(&from, rotated(&self.path, n + 1))?;
                }
            }
            fs::rename(&self.path, rotated(&self.path, 1))?;
            self.file = OpenOptions::new()
                .create(true)
                .append(true)
                .open(&self.path)?;
        }
        self.size = 0;
        Ok(())
    }
}

fn parse_lines(reader: impl BufRead, out: &mut Vec<Entry>) -> io::Result<()> {
    for line in reader.lines() {
        if let Ok(e) = serde_json::from_str::<Entry>(&line?) {
            out.push(e);
        }
    }
    Ok(())
}

/// Every entry kept, oldest first.
pub fn read_all(path: &Path, max_files: u32) -> io::Result<Vec<Entry>> {
    let mut entries = Vec::new();
    for n in (1..max_files.max(1)).rev() {
        if let Ok(f) = File::open(rotated(path, n)) {
            parse_lines(BufReader::new(f), &mut entries)?;
        }
    }
    match File::open(path) {
        Ok(f) => parse_lines(BufReader::new(f), &mut entries)?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(e),
    }
    Ok(entries)
}

/// Reads entries appended to a log after a point, across rotations: the open file is
/// read to its end before switching to the new file at the same path.
pub struct Follower {
    path: PathBuf,
    file: Option<File>,
    inode: u64,
    pending: Vec<u8>,
}

impl Follower {
    /// Starts at the current end of the log.
    pub fn at_end(path: &Path) -> io::Result<Follower> {
        let mut f = Follower {
            path: path.to_path_buf(),
            file: None,
            inode: 0,
            pending: Vec::new(),
        };
        if let Ok(mut file) = File::open(path) {
            f.inode = file.metadata()?.ino();
            file.seek(SeekFrom::End(0))?;
            f.file = Some(file);
        }
        Ok(f)
    }

    /// Entries written since the last call.
    pub fn poll(&mut self) -> io::Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.drain(&mut out)?;
        if let Ok(meta) = fs::metadata(&self.path)
            && (self.file.is_none() || meta.ino() != self.inode)
        {
            self.file = Some(File::open(&self.path)?);
            self.inode = meta.ino();
            self.pending.clear();
            self.drain(&mut out)?;
        }
        Ok(out)
    }

    fn drain(&mut self, out: &mut Vec<Entry>) -> io::Result<()> {
        if let Some(file) = &mut self.file {
            file.read_to_end(&mut self.pending)?;
            let complete = self
                .pending
                .iter()
                .rposition(|b| *b == b'\n')
                .map_or(0, |p| p + 1);
            parse_lines(&self.pending[..complete], out)?;
            self.pending.drain(..complete);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn texts(entries: &[Entry]) -> Vec<&str> {
        entries.iter().map(|e| e.log.as_str()).collect()
    }

    #[test]
    fn lines_are_split_and_partials_wait() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = LogWriter::open(&p, LogOptions::default()).unwrap();
        w.write(Stream::Stdout, b"one\ntw").unwrap();
        w.write(Stream::Stderr, b"err\n").unwrap();
        w.write(Stream::Stdout, b"o\nthree").unwrap();
        assert_eq!(
            texts(&read_all(&p, 3).unwrap()),
            ["one\n", "err\n", "two\n"]
        );
        w.flush().unwrap();
        let all = read_all(&p, 3).unwrap();
        assert_eq!(texts(&all), ["one\n", "err\n", "two\n", "three"]);
        assert_eq!(all[1].stream, Stream::Stderr);
        assert!(humantime::parse_rfc3339(&all[0].time).is_ok());
    }

    #[test]
    fn long_lines_are_cut() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = LogWriter::open(&p, LogOptions::default()).unwrap();
        w.write(Stream::Stdout, &vec![b'x'; MAX_LINE * 2 + 10])
            .unwrap();
        w.flush().unwrap();
        let lens: Vec<usize> = read_all(&p, 1)
            .unwrap()
            .iter()
            .map(|e| e.log.len())
            .collect();
        assert_eq!(lens, [MAX_LINE, MAX_LINE, 10]);
    }

    #[test]
    fn rotation_keeps_max_files_and_reads_back_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let opts = LogOptions {
            max_size: 200,
            max_files: 3,
        };
        let mut w = LogWriter::open(&p, opts).unwrap();
        for i in 0..40 {
            w.write(Stream::Stdout, format!("line {i}\n").as_bytes())
                .unwrap();
        }
        assert!(rotated(&p, 1).exists() && rotated(&p, 2).exists() && !rotated(&p, 3).exists());
        let all = read_all(&p, 3).unwrap();
        let numbers: Vec<usize> = all
            .iter()
            .map(|e| e.log.trim()[5..].parse().unwrap())
            .collect();
        assert_eq!(numbers.last(), Some(&39));
        assert!(
            numbers.windows(2).all(|w| w[1] == w[0] + 1),
            "in order: {numbers:?}"
        );
        for f in [p.clone(), rotated(&p, 1), rotated(&p, 2)] {
            assert!(fs::metadata(f).unwrap().len() <= 200);
        }
    }

    #[test]
    fn follower_sees_appends_across_rotation() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("c.log");
        let mut w = LogWriter::open(
            &p,
            LogOptions {
                max_size: 150,
                max_files: 2,
            },
        )
        .unwrap();
        w.write(Stream::Stdout, b"before\n").unwrap();
        let mut f = Follower::at_end(&p).unwrap();
        assert!(f.poll().unwrap().is_empty());
        let mut seen = Vec::new();
        for i in 0..10 {
            w.write(Stream::Stdout, format!("after {i}\n").as_bytes())
                .unwrap();
            seen.extend(f.poll().unwrap());
        }
        assert_eq!(seen.len(), 10, "{:?}", texts(&seen));
        assert_eq!(seen[9].log, "after 9\n");
    }
}
