//! TensorBoard event files: the `tfevents` record format with scalar summaries, written
//! without TensorFlow (prost for the two protocol buffer messages, CRC32C for the checksums).
//!
//! A file is a sequence of records: `length: u64 LE`, `masked_crc32c(length): u32 LE`,
//! `data`, `masked_crc32c(data): u32 LE`; each `data` is an `Event` message, the first one
//! holding `file_version = "brain.Event:2"`.

use crate::error::{Error, Result};
use prost::Message;
use std::fs::File;
use std::io::{BufWriter, Seek, Write};
use std::path::{Path, PathBuf};

/// `tensorflow.Event`, the fields scalars need.
#[derive(Clone, PartialEq, prost::Message)]
struct Event {
    #[prost(double, tag = "1")]
    wall_time: f64,
    #[prost(int64, tag = "2")]
    step: i64,
    #[prost(oneof = "What", tags = "3, 5")]
    what: Option<What>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum What {
    #[prost(string, tag = "3")]
    FileVersion(String),
    #[prost(message, tag = "5")]
    Summary(Summary),
}

/// `tensorflow.Summary`.
#[derive(Clone, PartialEq, prost::Message)]
struct Summary {
    #[prost(message, repeated, tag = "1")]
    value: Vec<SummaryValue>,
}

/// `tensorflow.Summary.Value`: a simple value or a histogram.
#[derive(Clone, PartialEq, prost::Message)]
struct SummaryValue {
    #[prost(string, tag = "1")]
    tag: String,
    #[prost(oneof = "Value", tags = "2, 5")]
    value: Option<Value>,
}

#[derive(Clone, PartialEq, prost::Oneof)]
enum Value {
    #[prost(float, tag = "2")]
    SimpleValue(f32),
    #[prost(message, tag = "5")]
    Histo(HistogramProto),
}

/// `tensorflow.HistogramProto`.
#[derive(Clone, PartialEq, prost::Message)]
struct HistogramProto {
    #[prost(double, tag = "1")]
    min: f64,
    #[prost(double, tag = "2")]
    max: f64,
    #[prost(double, tag = "3")]
    num: f64,
    #[prost(double, tag = "4")]
    sum: f64,
    #[prost(double, tag = "5")]
    sum_squares: f64,
    #[prost(double, repeated, tag = "6")]
    bucket_limit: Vec<f64>,
    #[prost(double, repeated, tag = "7")]
    bucket: Vec<f64>,
}

/// An event file that TensorBoard reads: scalars by tag and step.
#[derive(Debug)]
pub struct EventWriter {
    path: PathBuf,
    file: BufWriter<File>,
}

impl EventWriter {
    /// Creates `dir/events.out.tfevents.<seconds>.<host>.<pid>` (and `dir`, if need be) and
    /// writes its version record.
    pub fn create(dir: impl AsRef<Path>) -> Result<Self> {
        let dir = dir.as_ref();
        std::fs::create_dir_all(dir).map_err(Error::io("create the TensorBoard directory", dir))?;
        let host = super::host_name();
        let seconds = super::unix_now().floor() as u64;
        let path = dir.join(format!("events.out.tfevents.{seconds}.{host}.{}", std::process::id()));
        let file = File::create(&path).map_err(Error::io("create", &path))?;
        let mut writer = EventWriter {
            path,
            file: BufWriter::new(file),
        };
        writer.write(Event {
            wall_time: super::unix_now(),
            step: 0,
            what: Some(What::FileVersion("brain.Event:2".into())),
        })?;
        Ok(writer)
    }

    /// Goes on writing `path` after its first `length` bytes (the records of a resume point;
    /// those after it are cut off), or creates a new file in `dir` when it is gone or shorter.
    pub fn resume(dir: impl AsRef<Path>, path: &Path, length: u64) -> Result<Self> {
        let file = std::fs::OpenOptions::new().write(true).open(path);
        match file {
            Ok(mut file) if file.metadata().is_ok_and(|m| m.len() >= length) => {
                file.set_len(length)
                    .and_then(|()| file.seek(std::io::SeekFrom::End(0)))
                    .map_err(Error::io("cut to the resume point", path))?;
                Ok(EventWriter {
                    path: path.to_owned(),
                    file: BufWriter::new(file),
                })
            }
            _ => {
                tracing::warn!(
                    "{} is gone or shorter than in the resume point: a new event file starts",
                    path.display()
                );
                Self::create(dir)
            }
        }
    }

    /// The file written.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Bytes written (every event is flushed), once they are on disk.
    pub fn length(&self) -> Result<u64> {
        let file = self.file.get_ref();
        file.sync_data()
            .and_then(|()| file.metadata())
            .map(|m| m.len())
            .map_err(Error::io("flush", &self.path))
    }

    /// Scalars at `step`, one event, flushed.
    pub fn scalars<'a>(&mut self, step: u64, values: impl IntoIterator<Item = (&'a str, f64)>) -> Result<()> {
        let value = values
            .into_iter()
            .filter(|(_, v)| v.is_finite())
            .map(|(tag, v)| SummaryValue {
                tag: tag.to_owned(),
                value: Some(Value::SimpleValue(v as f32)),
            })
            .collect();
        self.write(Event {
            wall_time: super::unix_now(),
            step: step as i64,
            what: Some(What::Summary(Summary { value })),
        })
    }

    /// Histograms at `step`, one event, flushed.
    pub fn histograms<'a>(
        &mut self,
        step: u64,
        histograms: impl IntoIterator<Item = (&'a str, &'a crate::records::history::Histogram)>,
    ) -> Result<()> {
        let value = histograms
            .into_iter()
            .map(|(tag, h)| SummaryValue {
                tag: tag.to_owned(),
                value: Some(Value::Histo(HistogramProto {
                    min: h.min(),
                    max: h.max(),
                    num: h.count(),
                    sum: h.sum(),
                    sum_squares: h.sum_squares(),
                    bucket_limit: h.buckets().iter().map(|b| b.0).collect(),
                    bucket: h.buckets().iter().map(|b| b.1).collect(),
                })),
            })
            .collect();
        self.write(Event {
            wall_time: super::unix_now(),
            step: step as i64,
            what: Some(What::Summary(Summary { value })),
        })
    }

    fn write(&mut self, event: Event) -> Result<()> {
        let data = event.encode_to_vec();
        let length = (data.len() as u64).to_le_bytes();
        let record = [
            &length[..],
            &masked_crc(&length).to_le_bytes(),
            &data,
            &masked_crc(&data).to_le_bytes(),
        ];
        for part in record {
            self.file.write_all(part).map_err(Error::io("write", &self.path))?;
        }
        self.file.flush().map_err(Error::io("write", &self.path))
    }
}

/// The checksum of the record format: CRC32C, rotated and offset ("masked").
fn masked_crc(data: &[u8]) -> u32 {
    let crc = crc32c::crc32c(data);
    crc.rotate_right(15).wrapping_add(0xa282_ead8)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_are_framed_and_checksummed() {
        let dir = tempfile::tempdir().unwrap();
        let mut writer = EventWriter::create(dir.path()).unwrap();
        writer.scalars(3, [("loss", 0.5)]).unwrap();
        let bytes = std::fs::read(writer.path()).unwrap();
        let mut records = Vec::new();
        let mut at = 0;
        while at < bytes.len() {
            let length = u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap()) as usize;
            assert_eq!(
                u32::from_le_bytes(bytes[at + 8..at + 12].try_into().unwrap()),
                masked_crc(&bytes[at..at + 8])
            );
            let data = &bytes[at + 12..at + 12 + length];
            let crc = u32::from_le_bytes(bytes[at + 12 + length..at + 16 + length].try_into().unwrap());
            assert_eq!(crc, masked_crc(data));
            records.push(Event::decode(data).unwrap());
            at += 16 + length;
        }
        assert_eq!(records.len(), 2);
        assert_eq!(records[0].what, Some(What::FileVersion("brain.Event:2".into())));
        let Some(What::Summary(summary)) = &records[1].what else {
            panic!("{records:?}")
        };
        assert_eq!(
            (records[1].step, summary.value[0].tag.as_str(), &summary.value[0].value),
            (3, "loss", &Some(Value::SimpleValue(0.5)))
        );
    }

    #[test]
    fn the_mask_of_the_record_format() {
        // The CRC of nothing is 0: the mask alone remains.
        assert_eq!(masked_crc(b""), 0xa282_ead8);
        assert_eq!(crc32c::crc32c(b"123456789"), 0xe306_9283, "CRC32C check value");
    }
}
