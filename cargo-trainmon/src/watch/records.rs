//! The metric files' lines as records, and the tables the dashboard draws from: numbers by
//! column for `epochs.*` and `steps.*`, `(step, name, value)` for `logged.*`.

use super::tail::{Line, Tail};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::Deserialize;
use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// A value in a line: a number (`None` for a non-finite one: empty in CSV, `null` in JSON), or
/// text.
#[derive(Debug, Clone, PartialEq)]
pub enum Field {
    Num(Option<f64>),
    Text(String),
}

/// A JSON object's entries in the order the file has them (serde_json's map would sort them).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Ordered(pub Vec<(String, Field)>);

impl<'de> Deserialize<'de> for Ordered {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Entries;
        impl<'de> Visitor<'de> for Entries {
            type Value = Ordered;
            fn expecting(&self, f: &mut fmt::Formatter) -> fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Ordered, A::Error> {
                let mut entries = Vec::new();
                while let Some((key, value)) = map.next_entry::<String, serde_json::Value>()? {
                    let field = match value {
                        serde_json::Value::Null => Field::Num(None),
                        serde_json::Value::Number(n) => Field::Num(n.as_f64().filter(|v| v.is_finite())),
                        serde_json::Value::String(s) => Field::Text(s),
                        other => Field::Text(other.to_string()),
                    };
                    entries.push((key, field));
                }
                Ok(Ordered(entries))
            }
        }
        deserializer.deserialize_map(Entries)
    }
}

/// How a file's lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// A JSON object a line.
    Jsonl,
    /// A header line, then comma-separated values.
    Csv,
}

/// Turns lines into records: a JSON object's entries, or a CSV line's fields named by its
/// header.
#[derive(Debug)]
struct Parser {
    format: Format,
    header: Option<Vec<String>>,
}

impl Parser {
    /// The record of `line`; `None` for a CSV header or a blank line. An error says why the
    /// line is not one.
    fn parse(&mut self, line: &str) -> Result<Option<Ordered>, String> {
        if line.trim().is_empty() {
            return Ok(None);
        }
        match self.format {
            Format::Jsonl => serde_json::from_str(line).map(Some).map_err(|e| e.to_string()),
            Format::Csv => {
                let fields = csv_fields(line)?;
                let Some(header) = &self.header else {
                    self.header = Some(fields);
                    return Ok(None);
                };
                if fields.len() != header.len() {
                    return Err(format!("{} fields where the header has {}", fields.len(), header.len()));
                }
                let entries = header.iter().cloned().zip(fields.into_iter().map(csv_value)).collect();
                Ok(Some(Ordered(entries)))
            }
        }
    }
}

/// The fields of one CSV line (quoted ones unquoted).
fn csv_fields(line: &str) -> Result<Vec<String>, String> {
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(false)
        .from_reader(line.as_bytes());
    match reader.records().next() {
        Some(Ok(record)) => Ok(record.iter().map(str::to_owned).collect()),
        Some(Err(e)) => Err(e.to_string()),
        None => Ok(Vec::new()),
    }
}

/// A CSV field: empty is a value that is not finite, a number is one, anything else text.
fn csv_value(text: String) -> Field {
    if text.is_empty() {
        return Field::Num(None);
    }
    match text.parse::<f64>() {
        Ok(v) => Field::Num(Some(v).filter(|v| v.is_finite())),
        Err(_) => Field::Text(text),
    }
}

/// What records go into.
pub trait Sink: Default {
    /// Takes a record; an error says why it does not fit.
    fn push(&mut self, record: Ordered) -> Result<(), String>;
}

/// Numbers by column, a row a line: `epochs.*` and `steps.*`. Columns come in the order the
/// file names them first; a row lacks the values its line did not have.
#[derive(Debug, Default)]
pub struct Table {
    columns: Vec<String>,
    index: HashMap<String, usize>,
    rows: Vec<Vec<Option<f64>>>,
}

impl Sink for Table {
    fn push(&mut self, record: Ordered) -> Result<(), String> {
        let mut row = vec![None; self.columns.len()];
        for (name, field) in record.0 {
            let value = match field {
                Field::Num(v) => v,
                Field::Text(text) => return Err(format!("`{name}` is not a number: {text:?}")),
            };
            let col = match self.index.get(&name) {
                Some(col) => *col,
                None => {
                    self.index.insert(name.clone(), self.columns.len());
                    self.columns.push(name);
                    self.columns.len() - 1
                }
            };
            if row.len() <= col {
                row.resize(col + 1, None);
            }
            row[col] = value;
        }
        self.rows.push(row);
        Ok(())
    }
}

impl Table {
    /// The column names, in file order.
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Rows (lines) read.
    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn has(&self, column: &str) -> bool {
        self.index.contains_key(column)
    }

    /// The value in `row` of `column`, if it has one.
    pub fn get(&self, row: usize, column: &str) -> Option<f64> {
        let col = *self.index.get(column)?;
        self.rows.get(row)?.get(col).copied().flatten()
    }

    /// The last row's value of `column`.
    pub fn last(&self, column: &str) -> Option<f64> {
        self.get(self.rows.len().checked_sub(1)?, column)
    }

    /// `(x, y)` of the rows that have both.
    pub fn points(&self, x: &str, y: &str) -> Vec<(f64, f64)> {
        let (Some(&xc), Some(&yc)) = (self.index.get(x), self.index.get(y)) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .filter_map(|row| Some((row.get(xc).copied().flatten()?, row.get(yc).copied().flatten()?)))
            .collect()
    }

    /// The values of `column`, with `None` where a row has none.
    pub fn values<'a>(&'a self, column: &str) -> impl Iterator<Item = Option<f64>> + 'a {
        let col = self.index.get(column).copied();
        self.rows
            .iter()
            .map(move |row| col.and_then(|c| row.get(c).copied().flatten()))
    }
}

/// `logged.*`: numbers hooks logged, `step,name,value` a line.
#[derive(Debug, Default)]
pub struct Logged {
    names: Vec<String>,
    index: HashMap<String, usize>,
    /// Step, name (index into `names`), value.
    rows: Vec<(f64, usize, Option<f64>)>,
}

impl Sink for Logged {
    fn push(&mut self, record: Ordered) -> Result<(), String> {
        let (mut step, mut name, mut value) = (None, None, None);
        for (key, field) in record.0 {
            match (key.as_str(), field) {
                ("step", Field::Num(v)) => step = v,
                ("name", Field::Text(t)) => name = Some(t),
                // A name that reads as a number (CSV cannot tell).
                ("name", Field::Num(Some(v))) => name = Some(v.to_string()),
                ("value", Field::Num(v)) => value = Some(v),
                (key @ ("step" | "value"), Field::Text(t)) => return Err(format!("`{key}` is not a number: {t:?}")),
                _ => {}
            }
        }
        let step = step.ok_or("no `step`")?;
        let name = name.ok_or("no `name`")?;
        let value = value.ok_or("no `value`")?;
        let at = match self.index.get(&name) {
            Some(at) => *at,
            None => {
                self.index.insert(name.clone(), self.names.len());
                self.names.push(name);
                self.names.len() - 1
            }
        };
        self.rows.push((step, at, value));
        Ok(())
    }
}

impl Logged {
    /// The names logged, in the order they first came.
    pub fn names(&self) -> &[String] {
        &self.names
    }

    /// `(step, value)` of `name`'s finite values.
    pub fn points(&self, name: &str) -> Vec<(f64, f64)> {
        let Some(&at) = self.index.get(name) else {
            return Vec::new();
        };
        self.rows
            .iter()
            .filter(|(_, n, _)| *n == at)
            .filter_map(|(step, _, value)| Some((*step, (*value)?)))
            .collect()
    }
}

/// Lines that could not be read, and the first one's reason.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Bad {
    pub count: usize,
    pub first: Option<String>,
}

impl Bad {
    fn add(&mut self, why: String) {
        self.count += 1;
        self.first.get_or_insert(why);
    }
}

/// One kind of metric file (`epochs`, `steps` or `logged`) of a run, in whichever format it has
/// (JSON Lines when both are there), read as it grows into `T`.
#[derive(Debug)]
pub struct Source<T> {
    stem: &'static str,
    file: Option<(Tail, Parser)>,
    data: T,
    bad: Bad,
    /// Why the file could not be read at the last look.
    error: Option<String>,
}

impl<T: Sink> Source<T> {
    pub fn new(stem: &'static str) -> Self {
        Source {
            stem,
            file: None,
            data: T::default(),
            bad: Bad::default(),
            error: None,
        }
    }

    /// The data read so far.
    pub fn data(&self) -> &T {
        &self.data
    }

    /// The file read, e.g. `steps.jsonl`; `None` while there is none.
    pub fn file_name(&self) -> Option<String> {
        let (tail, _) = self.file.as_ref()?;
        Some(tail.path().file_name()?.to_string_lossy().into_owned())
    }

    /// The file of this kind in `dir`: `STEM.jsonl`, else `STEM.csv`.
    pub fn pick(dir: &Path, stem: &str) -> Option<(PathBuf, Format)> {
        [("jsonl", Format::Jsonl), ("csv", Format::Csv)]
            .into_iter()
            .map(|(ext, format)| (dir.join(format!("{stem}.{ext}")), format))
            .find(|(path, _)| path.is_file())
    }

    /// Reads what was added to the file in `dir` since the last call.
    pub fn update(&mut self, dir: &Path) {
        let picked = Self::pick(dir, self.stem);
        let current = self.file.as_ref().map(|(tail, _)| tail.path());
        match &picked {
            Some((path, format)) if current != Some(path.as_path()) => {
                // The first look, or a JSON Lines file that came after the CSV one.
                self.file = Some((
                    Tail::new(path.clone()),
                    Parser {
                        format: *format,
                        header: None,
                    },
                ));
                self.clear();
            }
            Some(_) => {}
            None => {
                if let Some(name) = self.file_name() {
                    self.error = Some(format!("{name} is gone"));
                }
                return;
            }
        }
        let Some((tail, parser)) = &mut self.file else { return };
        match tail.read() {
            Ok(added) => {
                self.error = None;
                if added.restarted {
                    parser.header = None;
                    self.data = T::default();
                    self.bad = Bad::default();
                }
                for Line { number, text } in added.lines {
                    match parser.parse(&text).and_then(|record| match record {
                        Some(record) => self.data.push(record),
                        None => Ok(()),
                    }) {
                        Ok(()) => {}
                        Err(why) => self.bad.add(format!("line {number}: {why}")),
                    }
                }
            }
            Err(e) => {
                let name = self.file_name().unwrap_or_default();
                self.error = Some(format!("{name} could not be read: {e}"));
            }
        }
    }

    fn clear(&mut self) {
        self.data = T::default();
        self.bad = Bad::default();
        self.error = None;
    }

    /// What went wrong reading the file, for its panel: unreadable lines (with a line cut off
    /// at the end unless `writing`: then it is one the writer is in the middle of), or the file
    /// itself.
    pub fn problem(&self, writing: bool) -> Option<String> {
        let name = self.file_name()?;
        let mut bad = self.bad.clone();
        if !writing {
            if let Some(cut) = self.file.as_ref().and_then(|(tail, _)| tail.partial()) {
                bad.add(format!("line {}: cut off (no end of line): {}", cut.number, cut.text));
            }
        }
        let lines = match bad.count {
            0 => None,
            1 => Some(format!(
                "1 line of {name} could not be read: {}",
                bad.first.unwrap_or_default()
            )),
            n => Some(format!(
                "{n} lines of {name} could not be read: {}",
                bad.first.unwrap_or_default()
            )),
        };
        match (&self.error, lines) {
            (Some(error), Some(lines)) => Some(format!("{error}; {lines}")),
            (Some(error), None) => Some(error.clone()),
            (None, lines) => lines,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_keep_their_key_order() {
        let record: Ordered = serde_json::from_str(r#"{"epoch":1,"loss":0.5,"acc":null,"tag":"x"}"#).unwrap();
        assert_eq!(
            record.0,
            [
                ("epoch".into(), Field::Num(Some(1.0))),
                ("loss".into(), Field::Num(Some(0.5))),
                ("acc".into(), Field::Num(None)),
                ("tag".into(), Field::Text("x".into())),
            ]
        );
    }

    #[test]
    fn csv_lines_are_named_by_the_header() {
        let mut parser = Parser {
            format: Format::Csv,
            header: None,
        };
        assert_eq!(parser.parse("epoch,loss,name").unwrap(), None);
        let record = parser.parse("2,,\"a,b\"").unwrap().unwrap();
        assert_eq!(
            record.0,
            [
                ("epoch".into(), Field::Num(Some(2.0))),
                ("loss".into(), Field::Num(None)),
                ("name".into(), Field::Text("a,b".into())),
            ]
        );
        assert_eq!(parser.parse("1,2").unwrap_err(), "2 fields where the header has 3");
    }

    #[test]
    fn a_table_grows_columns_and_refuses_text() {
        let mut table = Table::default();
        table
            .push(Ordered(vec![("epoch".into(), Field::Num(Some(1.0)))]))
            .unwrap();
        table
            .push(Ordered(vec![
                ("epoch".into(), Field::Num(Some(2.0))),
                ("loss".into(), Field::Num(Some(0.5))),
            ]))
            .unwrap();
        assert_eq!(table.columns(), ["epoch", "loss"]);
        assert_eq!(table.points("epoch", "loss"), [(2.0, 0.5)]);
        let err = table
            .push(Ordered(vec![("loss".into(), Field::Text("high".into()))]))
            .unwrap_err();
        assert_eq!(err, "`loss` is not a number: \"high\"");
        assert_eq!(table.len(), 2);
    }

    #[test]
    fn logged_values_by_name() {
        let mut logged = Logged::default();
        for (step, name, value) in [
            (10.0, "grad_norm", Some(1.5)),
            (10.0, "lr", Some(0.1)),
            (20.0, "grad_norm", None),
        ] {
            logged
                .push(Ordered(vec![
                    ("step".into(), Field::Num(Some(step))),
                    ("name".into(), Field::Text(name.into())),
                    ("value".into(), Field::Num(value)),
                ]))
                .unwrap();
        }
        assert_eq!(logged.names(), ["grad_norm", "lr"]);
        assert_eq!(logged.points("grad_norm"), [(10.0, 1.5)]);
        assert!(logged
            .push(Ordered(vec![("step".into(), Field::Num(Some(1.0)))]))
            .is_err());
    }
}
