//! Output sinks: rows → Parquet file, CSV, JSON Lines or a human table.
//!
//! Every sink takes rows in slices, so a caller streaming [`Aggregator::rows`] in chunks of
//! [`CHUNK_ROWS`] keeps memory bounded whatever the number of targets.
//!
//! The Parquet, CSV and JSONL sinks work for any [`Record`] (ping's [`Row`], scan's
//! [`ScanRow`](crate::ScanRow)…); the human table is ping's alone. [`sink_for`] picks a
//! sink of ping rows by [`Format`], [`text_sink`] a CSV or JSONL sink of any record.
//!
//! [`Aggregator::rows`]: crate::Aggregator::rows

use core::fmt::Write as _;
use core::marker::PhantomData;
use core::str::FromStr;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use asdic_fs::{Dest, Output};

use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;

use crate::error::{Error, Result};
use crate::schema::{Record, Row, Value, record_batch};

/// Rows per Arrow record batch, and the chunk size callers should stream rows in.
pub const CHUNK_ROWS: usize = 8192;

/// Maximum rows per Parquet row group.
pub const ROW_GROUP_ROWS: usize = 65536;

/// Somewhere rows of type `R` go.
///
/// For ping rows, which borrow from the aggregator, a sink object is
/// `dyn Sink<Row<'a>>` with `'a` the aggregator's borrow.
pub trait Sink<R> {
    /// Writes `rows`, in order, after those written before.
    ///
    /// # Errors
    /// When the underlying writer fails, or ([`Error::ColumnType`], [`Error::CellCount`])
    /// when a record's cells do not match its columns.
    fn write_rows(&mut self, rows: &[R]) -> Result<()>;

    /// Writes whatever is buffered and completes the output (Parquet footer, rename into
    /// place, header of an empty CSV…).
    ///
    /// # Errors
    /// When the underlying writer fails.
    fn finish(self: Box<Self>) -> Result<()>;
}

/// Writes `rows` to `sink` in chunks of [`CHUNK_ROWS`] (a sink's write is a batch: an Arrow
/// record batch, a buffered run of text lines), never holding more than one chunk.
///
/// # Errors
/// As [`Sink::write_rows`].
pub fn write_chunked<R>(sink: &mut dyn Sink<R>, rows: impl IntoIterator<Item = R>) -> Result<()> {
    let mut chunk = Vec::with_capacity(CHUNK_ROWS);
    for row in rows {
        chunk.push(row);
        if chunk.len() == CHUNK_ROWS {
            sink.write_rows(&chunk)?;
            chunk.clear();
        }
    }
    if !chunk.is_empty() {
        sink.write_rows(&chunk)?;
    }
    Ok(())
}

/// Every output format asdic writes. Each subcommand takes those that fit its results:
/// `ping` table, csv, jsonl (and Parquet with `-o`); `scan` parquet, csv, jsonl; `trace` text,
/// csv, jsonl (and Parquet with `-o`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Format {
    /// Aligned human-readable table of ping rows ([`TableSink`]).
    #[default]
    Table,
    /// A traceroute-style path per target (written by the trace paths themselves).
    Text,
    /// Comma-separated values with a header line ([`CsvSink`]).
    Csv,
    /// One JSON object per line ([`JsonlSink`]).
    Jsonl,
    /// Apache Parquet, files only ([`ParquetSink`], `PartedSink`).
    Parquet,
}

impl Format {
    /// Every format, in declaration order.
    pub const ALL: [Format; 5] = [
        Format::Table,
        Format::Text,
        Format::Csv,
        Format::Jsonl,
        Format::Parquet,
    ];

    /// The format's name, as [`FromStr`] accepts it.
    pub fn name(self) -> &'static str {
        match self {
            Format::Table => "table",
            Format::Text => "text",
            Format::Csv => "csv",
            Format::Jsonl => "jsonl",
            Format::Parquet => "parquet",
        }
    }

    /// One line on what the format is, for help texts.
    pub fn describe(self) -> &'static str {
        match self {
            Format::Table => "Aligned human-readable table",
            Format::Text => "A traceroute-style path per target",
            Format::Csv => "Comma-separated values with a header line",
            Format::Jsonl => "One JSON object per line",
            Format::Parquet => "Apache Parquet (files only)",
        }
    }
}

impl FromStr for Format {
    type Err = Error;

    /// Accepts `table`, `text`, `csv`, `jsonl` (or `ndjson`), `parquet`, in any case.
    fn from_str(s: &str) -> Result<Self> {
        let lower = s.to_ascii_lowercase();
        if lower == "ndjson" {
            return Ok(Format::Jsonl);
        }
        Format::ALL
            .into_iter()
            .find(|f| f.name() == lower)
            .ok_or_else(|| Error::UnknownFormat(s.to_owned()))
    }
}

impl core::fmt::Display for Format {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(self.name())
    }
}

/// A sink of ping rows writing `format` (table, csv or jsonl) to `writer` (buffered by the
/// sink).
///
/// # Errors
/// [`Error::NotFor`] for a format ping rows are not written in here (text; Parquet is
/// [`ParquetSink`], file-only).
pub fn sink_for<'a, 'r: 'a, W: Write + 'a>(
    format: Format,
    writer: W,
) -> Result<Box<dyn Sink<Row<'r>> + 'a>> {
    match format {
        Format::Table => Ok(Box::new(TableSink::new(writer))),
        Format::Csv => Ok(Box::new(CsvSink::new(writer))),
        Format::Jsonl => Ok(Box::new(JsonlSink::new(writer))),
        Format::Text | Format::Parquet => Err(Error::NotFor {
            format,
            what: "ping rows on a stream",
        }),
    }
}

/// A sink of `R` records writing `format` (csv or jsonl, the text formats any [`Record`] has)
/// to `writer` (buffered by the sink).
///
/// # Errors
/// [`Error::NotFor`] for the other formats.
pub fn text_sink<'a, R: Record + 'a, W: Write + 'a>(
    format: Format,
    writer: W,
) -> Result<Box<dyn Sink<R> + 'a>> {
    match format {
        Format::Csv => Ok(Box::new(CsvSink::new(writer))),
        Format::Jsonl => Ok(Box::new(JsonlSink::new(writer))),
        Format::Table | Format::Text | Format::Parquet => Err(Error::NotFor {
            format,
            what: "records on a stream",
        }),
    }
}

/// A sink of `R` records into output `out` as `format` — Parquet (with `metadata`, row
/// groups of at most `row_group` rows), CSV or JSON Lines — whose
/// [`finish`](Sink::finish) completes `out` (a file is published under its name, see
/// [`Output::commit`]).
///
/// # Errors
/// [`Error::NotFor`] for the table and text formats, [`Error::Parquet`] if the Parquet writer
/// cannot start.
pub fn file_sink<'a, R: Record + 'a>(
    format: Format,
    out: Output,
    metadata: Vec<(String, String)>,
    row_group: usize,
) -> Result<Box<dyn Sink<R> + 'a>> {
    file_sink_of(format, out, metadata, row_group, Fields::default())
}

/// [`file_sink`] whose CSV or JSON Lines hold only the columns `fields` keeps (Parquet holds
/// every column).
///
/// # Errors
/// As [`file_sink`].
pub fn file_sink_of<'a, R: Record + 'a>(
    format: Format,
    out: Output,
    metadata: Vec<(String, String)>,
    row_group: usize,
    fields: Fields,
) -> Result<Box<dyn Sink<R> + 'a>> {
    match format {
        Format::Parquet => Ok(Box::new(ParquetSink::to(out, metadata, row_group)?)),
        Format::Csv => Ok(Box::new(TextFile::Csv(CsvSink::with_fields(out, fields)))),
        Format::Jsonl => Ok(Box::new(TextFile::Jsonl(JsonlSink::with_fields(
            out, fields,
        )))),
        Format::Table | Format::Text => Err(Error::NotFor {
            format,
            what: "result files",
        }),
    }
}

/// A CSV or JSONL sink whose finish completes its output.
enum TextFile<R> {
    Csv(CsvSink<Output, R>),
    Jsonl(JsonlSink<Output, R>),
}

impl<R: Record> Sink<R> for TextFile<R> {
    fn write_rows(&mut self, rows: &[R]) -> Result<()> {
        match self {
            TextFile::Csv(s) => s.write_rows(rows),
            TextFile::Jsonl(s) => s.write_rows(rows),
        }
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let out = match *self {
            TextFile::Csv(s) => s.into_inner()?,
            TextFile::Jsonl(s) => s.into_inner()?,
        };
        out.commit()?;
        Ok(())
    }
}

/// Calls `f` with the index and value of each of `row`'s cells, then checks that there
/// was one cell per column.
fn for_each_cell<R: Record>(row: &R, mut f: impl FnMut(usize, &Value<'_>)) -> Result<()> {
    let mut cells = 0;
    row.visit(&mut |value| {
        f(cells, &value);
        cells += 1;
    });
    let columns = R::columns().len();
    if cells == columns {
        Ok(())
    } else {
        Err(Error::CellCount { columns, cells })
    }
}

/// Writes a Parquet file of `R` records: ZSTD, record batches of [`CHUNK_ROWS`], row
/// groups of at most [`ROW_GROUP_ROWS`] (fewer where [`flush`](ParquetSink::flush) cut
/// them), run parameters as key-value metadata.
///
/// It writes to an [`Output`]: a file's data goes to a temporary that only a successful
/// [`finish`](Sink::finish) publishes under the final name (never replacing a file unless the
/// output was resolved with `--force`), so a crash never leaves a partial file under the final
/// name and dropping the sink unfinished removes the temporary; a stream (stdout, a FIFO)
/// gets the bytes as row groups complete, the footer last (Parquet needs no seeking).
#[derive(Debug)]
pub struct ParquetSink<R> {
    writer: ArrowWriter<Output>,
    path: PathBuf,
    rows: PhantomData<fn(&R)>,
}

impl<R: Record> ParquetSink<R> {
    /// Creates a new file at `path`, which must not exist (see [`Dest::resolve`]), with
    /// `metadata` as key-value metadata, for records of [`R::schema()`](Record::schema).
    ///
    /// # Errors
    /// [`Error::Fs`] if `path` exists or its temporary cannot be created, [`Error::Parquet`]
    /// if the writer cannot start.
    pub fn create(path: impl AsRef<Path>, metadata: Vec<(String, String)>) -> Result<Self> {
        Self::with_row_groups(path, metadata, ROW_GROUP_ROWS)
    }

    /// As [`create`](Self::create), with row groups of at most `rows` rows: the writer
    /// buffers one row group in memory, so a long streaming run trades a little compression
    /// for memory with a smaller value.
    ///
    /// # Errors
    /// As [`create`](Self::create).
    pub fn with_row_groups(
        path: impl AsRef<Path>,
        metadata: Vec<(String, String)>,
        rows: usize,
    ) -> Result<Self> {
        let out = Dest::resolve(path.as_ref(), false)?.whole()?;
        Self::to(out, metadata, rows)
    }

    /// Writes to `out` (a whole-file output, see [`Dest::whole`]), row groups of at most
    /// `rows` rows.
    ///
    /// # Errors
    /// [`Error::Parquet`] if the writer cannot start.
    pub fn to(out: Output, metadata: Vec<(String, String)>, rows: usize) -> Result<Self> {
        Self::to_schema(out, R::schema(), metadata, rows)
    }

    /// As [`to`](Self::to), for batches of `schema` (merging parts of another schema version
    /// than `R`'s, as they are).
    ///
    /// # Errors
    /// [`Error::Parquet`] if the writer cannot start.
    pub fn to_schema(
        out: Output,
        schema: arrow_schema::SchemaRef,
        metadata: Vec<(String, String)>,
        rows: usize,
    ) -> Result<Self> {
        let path = out.path().to_path_buf();
        let metadata = metadata
            .into_iter()
            .map(|(k, v)| KeyValue::new(k, v))
            .collect();
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::default()))
            .set_max_row_group_row_count(Some(rows.max(1)))
            .set_key_value_metadata(Some(metadata))
            .build();
        let writer = ArrowWriter::try_new(out, schema, Some(props))?;
        Ok(Self {
            writer,
            path,
            rows: PhantomData,
        })
    }

    /// Adds a key-value pair to the file's metadata (end time, totals…); allowed until
    /// [`finish`](Sink::finish).
    pub fn add_metadata(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.writer
            .append_key_value_metadata(KeyValue::new(key.into(), value.into()));
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Writes the rows buffered so far to the file as a complete row group (nothing when
    /// none are buffered), so that a long streaming run bounds its memory and gets its
    /// data out of the process; the row group is readable once the file is finished.
    ///
    /// This does not fsync: [`finish`](Sink::finish) does, once.
    ///
    /// # Errors
    /// [`Error::Parquet`] if encoding or writing fails.
    pub fn flush(&mut self) -> Result<()> {
        self.writer.flush()?;
        Ok(())
    }

    /// Writes a record batch of [`R::schema()`](Record::schema) as it is (merging parts).
    ///
    /// # Errors
    /// [`Error::Parquet`] if the batch does not fit the schema or writing fails.
    pub fn write_batch(&mut self, batch: &arrow_array::RecordBatch) -> Result<()> {
        self.writer.write(batch)?;
        Ok(())
    }

    /// Rows buffered in memory, not yet written as a row group.
    pub fn buffered_rows(&self) -> usize {
        self.writer.in_progress_rows()
    }

    /// Estimated memory, in bytes, held by the buffered rows.
    pub fn buffered_bytes(&self) -> usize {
        self.writer.memory_size()
    }
}

impl<R: Record> Sink<R> for ParquetSink<R> {
    fn write_rows(&mut self, rows: &[R]) -> Result<()> {
        for chunk in rows.chunks(CHUNK_ROWS) {
            self.writer.write(&record_batch(chunk)?)?;
        }
        Ok(())
    }

    fn finish(self: Box<Self>) -> Result<()> {
        let out = self.writer.into_inner()?;
        out.commit()?;
        Ok(())
    }
}

/// CSV with a header line: RFC 4180 quoting (fields holding `,` `"` CR or LF are quoted,
/// quotes doubled), an empty field for null, `""` for an empty string, LF line ends.
///
/// The header names [`R::columns()`](Record::columns).
///
/// Not arrow-csv: it writes a null as its null string (empty by default) and an empty string
/// unquoted unless it is a record's only field, so the two read back alike; it also needs
/// whole record batches where this streams rows as they come (stdout, `--format csv`).
/// [`JsonlSink`] streams rows the same way, from the same [`Record::visit`] cells.
#[derive(Debug)]
pub struct CsvSink<W: Write, R> {
    out: BufWriter<W>,
    header_written: bool,
    line: String,
    cell: String,
    fields: Fields,
    rows: PhantomData<fn(&R)>,
}

/// Which of a record's columns a text sink writes (`--fields`): all by default.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Fields(Option<Vec<bool>>);

impl Fields {
    /// The columns of `R` named in `names` (in the schema's order), or which name is not one.
    ///
    /// # Errors
    /// The first name that is no column of `R`, with the columns there are.
    pub fn of<R: Record>(names: &[String]) -> core::result::Result<Fields, String> {
        let columns = R::columns();
        let mut keep = vec![false; columns.len()];
        for n in names {
            let i = columns.iter().position(|c| c.name == n).ok_or_else(|| {
                let all: Vec<&str> = columns.iter().map(|c| c.name).collect();
                format!("{n:?} is not a column (columns: {})", all.join(","))
            })?;
            keep[i] = true;
        }
        Ok(Fields(Some(keep)))
    }

    /// Whether column `i` is written.
    pub fn keeps(&self, i: usize) -> bool {
        self.0
            .as_ref()
            .is_none_or(|k| k.get(i).copied().unwrap_or(false))
    }
}

impl<W: Write, R: Record> CsvSink<W, R> {
    /// A CSV sink over `writer`; the header goes out with the first rows or at finish.
    pub fn new(writer: W) -> Self {
        Self::with_fields(writer, Fields::default())
    }

    /// A CSV sink writing only the columns `fields` keeps.
    pub fn with_fields(writer: W, fields: Fields) -> Self {
        Self {
            out: BufWriter::new(writer),
            header_written: false,
            line: String::new(),
            cell: String::new(),
            fields,
            rows: PhantomData,
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        self.line.clear();
        let mut first = true;
        for (i, c) in R::columns().iter().enumerate() {
            if !self.fields.keeps(i) {
                continue;
            }
            if !first {
                self.line.push(',');
            }
            first = false;
            push_csv_field(&mut self.line, c.name);
        }
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }
}

impl<W: Write, R: Record> CsvSink<W, R> {
    /// Completes the CSV (the header of an empty one) and returns the writer, flushed.
    ///
    /// # Errors
    /// [`Error::Io`] when writing fails.
    pub fn into_inner(mut self) -> Result<W> {
        self.header()?;
        self.out.into_inner().map_err(|e| Error::Io(e.into_error()))
    }
}

impl<W: Write, R: Record> Sink<R> for CsvSink<W, R> {
    fn write_rows(&mut self, rows: &[R]) -> Result<()> {
        self.header()?;
        for row in rows {
            let Self {
                line, cell, fields, ..
            } = self;
            line.clear();
            let mut first = true;
            for_each_cell(row, |i, value| {
                if !fields.keeps(i) {
                    return;
                }
                if !first {
                    line.push(',');
                }
                first = false;
                if !value.is_null() {
                    push_value(line, cell, value, push_csv_field);
                }
            })?;
            self.line.push('\n');
            self.out.write_all(self.line.as_bytes())?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.header()?;
        self.out.flush()?;
        Ok(())
    }
}

/// Appends a non-null value to `line`: text through `quote`, numbers as they print. `cell`
/// is scratch space, reused so that rows allocate nothing once warm.
fn push_value(
    line: &mut String,
    cell: &mut String,
    value: &Value<'_>,
    quote: fn(&mut String, &str),
) {
    cell.clear();
    // Writing to a String cannot fail.
    let _ = write!(cell, "{value}");
    if value.is_text() {
        quote(line, cell);
    } else {
        line.push_str(cell);
    }
}

/// Appends `s` as one CSV field, quoted when RFC 4180 requires it (and when empty, so that
/// an empty string differs from null).
fn push_csv_field(line: &mut String, s: &str) {
    if !s.is_empty() && !s.contains([',', '"', '\r', '\n']) {
        line.push_str(s);
        return;
    }
    line.push('"');
    for c in s.chars() {
        if c == '"' {
            line.push('"');
        }
        line.push(c);
    }
    line.push('"');
}

/// JSON Lines: one object per row with the [`R::columns()`](Record::columns) as keys in
/// order, `null` for null (and for non-finite floats).
#[derive(Debug)]
pub struct JsonlSink<W: Write, R> {
    out: BufWriter<W>,
    line: String,
    cell: String,
    fields: Fields,
    rows: PhantomData<fn(&R)>,
}

impl<W: Write, R: Record> JsonlSink<W, R> {
    /// A JSON Lines sink over `writer`.
    pub fn new(writer: W) -> Self {
        Self::with_fields(writer, Fields::default())
    }

    /// A JSON Lines sink writing only the keys `fields` keeps.
    pub fn with_fields(writer: W, fields: Fields) -> Self {
        Self {
            out: BufWriter::new(writer),
            line: String::new(),
            cell: String::new(),
            fields,
            rows: PhantomData,
        }
    }
}

impl<W: Write, R: Record> JsonlSink<W, R> {
    /// Returns the writer, flushed.
    ///
    /// # Errors
    /// [`Error::Io`] when writing fails.
    pub fn into_inner(self) -> Result<W> {
        self.out.into_inner().map_err(|e| Error::Io(e.into_error()))
    }
}

impl<W: Write, R: Record> Sink<R> for JsonlSink<W, R> {
    fn write_rows(&mut self, rows: &[R]) -> Result<()> {
        let columns = R::columns();
        for row in rows {
            let Self {
                line, cell, fields, ..
            } = self;
            line.clear();
            line.push('{');
            let mut first = true;
            for_each_cell(row, |i, value| {
                // A cell beyond the columns fails the row below.
                let Some(c) = columns.get(i).filter(|_| fields.keeps(i)) else {
                    return;
                };
                if !first {
                    line.push(',');
                }
                first = false;
                push_json_string(line, c.name);
                line.push(':');
                if value.is_null() {
                    line.push_str("null");
                } else {
                    push_value(line, cell, value, push_json_string);
                }
            })?;
            self.line.push_str("}\n");
            self.out.write_all(self.line.as_bytes())?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.out.flush()?;
        Ok(())
    }
}

/// Appends `s` as a JSON string (RFC 8259): quotes, backslashes and every control
/// character below U+0020 escaped.
pub(crate) fn push_json_string(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            '\u{c}' => out.push_str("\\f"),
            c if c < ' ' => {
                // Writing to a String cannot fail.
                let _ = write!(out, "\\u{:04x}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

/// An fping-like aligned table for people: target, sent, received, loss, RTT
/// min/avg/max/p99 in milliseconds (`-` without replies), and a note naming the first
/// error or an unexpected responder.
///
/// Columns have fixed widths (rows are streamed, so widths cannot follow the data): the
/// target column is as wide as asked ([`TableSink::with_target_width`], the longest target
/// of the run: every line aligns), else 15, any IPv4 address.
#[derive(Debug)]
pub struct TableSink<W: Write> {
    out: BufWriter<W>,
    header_written: bool,
    line: String,
    width: usize,
}

/// How wide a row's target cell in a [`TableSink`] is: "NAME (ADDR)" or "ADDR".
pub fn table_label_width(row: &Row<'_>) -> usize {
    let addr = row.target.to_string().len();
    row.name.map_or(addr, |n| n.chars().count() + addr + 3)
}

/// Width of the target column by default (fits any IPv4 address).
const TARGET_WIDTH: usize = 15;

impl<W: Write> TableSink<W> {
    /// A table sink over `writer`; the header goes out with the first rows or at finish.
    pub fn new(writer: W) -> Self {
        Self::with_target_width(writer, TARGET_WIDTH)
    }

    /// A table whose target column is `width` characters wide (at least 15).
    pub fn with_target_width(writer: W, width: usize) -> Self {
        Self {
            out: BufWriter::new(writer),
            header_written: false,
            line: String::new(),
            width: width.max(TARGET_WIDTH),
        }
    }

    fn header(&mut self) -> io::Result<()> {
        if self.header_written {
            return Ok(());
        }
        self.header_written = true;
        self.line.clear();
        let _ = write!(
            self.line,
            "{:<w$} {:>5} {:>5} {:>7} {:>9} {:>9} {:>9} {:>9}  note",
            "target",
            "sent",
            "recv",
            "loss",
            "min ms",
            "avg ms",
            "max ms",
            "p99 ms",
            w = self.width
        );
        self.line.push('\n');
        self.out.write_all(self.line.as_bytes())
    }
}

impl<W: Write> Sink<Row<'_>> for TableSink<W> {
    fn write_rows(&mut self, rows: &[Row<'_>]) -> Result<()> {
        self.header()?;
        for row in rows {
            self.line.clear();
            // Writing to a String cannot fail: the results below are all Ok.
            let _ = match row.name {
                Some(name) => write!(self.line, "{name} ({})", row.target),
                None => write!(self.line, "{}", row.target),
            };
            let pad = self.width.saturating_sub(self.line.chars().count());
            self.line.extend(core::iter::repeat_n(' ', pad));
            let _ = write!(self.line, " {:>5} {:>5} ", row.sent, row.received);
            let _ = match row.loss_pct {
                Some(loss) => write!(self.line, "{:>6.2}%", loss),
                None => write!(self.line, "{:>7}", "-"),
            };
            match row.rtt {
                Some(r) => {
                    for ns in [r.min_ns as f64, r.mean_ns, r.max_ns as f64, r.p99_ns as f64] {
                        let _ = write!(self.line, " {:>9.3}", ns / 1e6);
                    }
                }
                None => {
                    for _ in 0..4 {
                        let _ = write!(self.line, " {:>9}", "-");
                    }
                }
            }
            self.line.push_str("  ");
            push_note(&mut self.line, row);
            let end = self.line.trim_end().len();
            self.line.truncate(end);
            self.line.push('\n');
            self.out.write_all(self.line.as_bytes())?;
        }
        Ok(())
    }

    fn finish(mut self: Box<Self>) -> Result<()> {
        self.header()?;
        self.out.flush()?;
        Ok(())
    }
}

/// The table's note: the first error and who sent it, else a replier other than the
/// target; then send failures, duplicates and late replies when there were any.
fn push_note(line: &mut String, row: &Row<'_>) {
    let mut parts = 0;
    let mut sep = |line: &mut String| {
        if parts > 0 {
            line.push_str("; ");
        }
        parts += 1;
    };
    // Writing to a String cannot fail.
    if let Some(e) = row.first_error {
        sep(line);
        let _ = write!(line, "{} from {}", e.describe(), e.from);
    } else if let Some(r) = row.responder {
        sep(line);
        let _ = write!(line, "reply from {r}");
    }
    for (n, what) in [
        (row.send_failed, "send failed"),
        (row.duplicates, "duplicates"),
        (row.late, "late"),
    ] {
        if n > 0 {
            sep(line);
            let _ = write!(line, "{n} {what}");
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use crate::schema::schema;
    use crate::schema::tests::{empty_row, full_row};
    use arrow_array::cast::AsArray;
    use arrow_array::types::{Float64Type, UInt64Type};
    use arrow_array::{Array, RecordBatch};
    use core::net::{IpAddr, Ipv4Addr};
    use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
    use std::fs::{self, File};

    fn render(format: Format, rows: &[Row<'_>]) -> String {
        let mut buf = Vec::new();
        let mut sink = sink_for(format, &mut buf).unwrap();
        sink.write_rows(rows).unwrap();
        sink.finish().unwrap();
        String::from_utf8(buf).unwrap()
    }

    #[test]
    fn text_sinks_write_the_fields_asked_for() {
        let fields = Fields::of::<Row<'_>>(&["target".into(), "loss_pct".into()]).unwrap();
        let rows = [full_row(), empty_row()];
        let mut buf = Vec::new();
        let mut csv = CsvSink::<_, Row<'_>>::with_fields(&mut buf, fields.clone());
        csv.write_rows(&rows).unwrap();
        Box::new(csv).finish().unwrap();
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "target,loss_pct");
        assert!(
            lines[1..].iter().all(|l| l.matches(',').count() == 1),
            "{text}"
        );
        assert_eq!(lines[2], "2001:db8::1,100");
        let mut buf = Vec::new();
        let mut jsonl = JsonlSink::<_, Row<'_>>::with_fields(&mut buf, fields);
        jsonl.write_rows(&rows[1..]).unwrap();
        Box::new(jsonl).finish().unwrap();
        assert_eq!(
            String::from_utf8(buf).unwrap(),
            "{\"target\":\"2001:db8::1\",\"loss_pct\":100}\n"
        );
        let e = Fields::of::<Row<'_>>(&["target".into(), "saddr".into()]).unwrap_err();
        assert!(
            e.starts_with("\"saddr\" is not a column (columns: target,name,"),
            "{e}"
        );
        assert!(Fields::default().keeps(7));
    }

    /// A path under the temp dir that no other test (or test run) uses.
    pub(crate) fn temp_path(tag: &str) -> PathBuf {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos());
        std::env::temp_dir().join(format!(
            "asdic-analysis-{tag}-{}-{nanos}.parquet",
            std::process::id()
        ))
    }

    #[test]
    fn csv_exact() {
        let text = render(Format::Csv, &[full_row(), empty_row()]);
        let expected = "\
target,name,sent,received,loss_pct,rtt_last_us,rtt_min_us,rtt_avg_us,rtt_max_us,rtt_stddev_us,rtt_p50_us,rtt_p90_us,rtt_p99_us,reply_ttl,errors,error_type,error_code,error_name,responder,timeouts,duplicates,late,send_failed,send_errno
192.0.2.1,\"host \"\"a\"\", b\",5,3,40,51.234,12,51.5005,1334,1.00025,50.001,210,1334,57,1,3,13,Destination Unreachable / Communication Administratively Prohibited,198.51.100.7,0,2,1,1,101
2001:db8::1,,2,0,100,,,,,,,,,,0,,,,,2,0,0,0,
";
        assert_eq!(text, expected);
    }

    #[test]
    fn csv_header_only_when_empty() {
        let text = render(Format::Csv, &[]);
        assert_eq!(text.lines().count(), 1);
        assert!(text.starts_with("target,name,sent,"));
        assert!(text.ends_with(",timeouts,duplicates,late,send_failed,send_errno\n"));
    }

    #[test]
    fn csv_quoting() {
        let mut line = String::new();
        for s in [
            "plain",
            "",
            "a,b",
            "say \"hi\"",
            "two\nlines",
            "cr\r",
            " spaced ",
        ] {
            push_csv_field(&mut line, s);
            line.push('|');
        }
        assert_eq!(
            line,
            "plain|\"\"|\"a,b\"|\"say \"\"hi\"\"\"|\"two\nlines\"|\"cr\r\"| spaced |"
        );
    }

    #[test]
    fn jsonl_exact() {
        let text = render(Format::Jsonl, &[full_row(), empty_row()]);
        let expected = concat!(
            r#"{"target":"192.0.2.1","name":"host \"a\", b","sent":5,"received":3,"loss_pct":40,"#,
            r#""rtt_last_us":51.234,"rtt_min_us":12,"rtt_avg_us":51.5005,"rtt_max_us":1334,"#,
            r#""rtt_stddev_us":1.00025,"rtt_p50_us":50.001,"rtt_p90_us":210,"rtt_p99_us":1334,"#,
            r#""reply_ttl":57,"errors":1,"error_type":3,"error_code":13,"#,
            r#""error_name":"Destination Unreachable / Communication Administratively Prohibited","#,
            r#""responder":"198.51.100.7","timeouts":0,"duplicates":2,"late":1,"#,
            r#""send_failed":1,"send_errno":101}"#,
            "\n",
            r#"{"target":"2001:db8::1","name":null,"sent":2,"received":0,"loss_pct":100,"#,
            r#""rtt_last_us":null,"rtt_min_us":null,"rtt_avg_us":null,"rtt_max_us":null,"#,
            r#""rtt_stddev_us":null,"rtt_p50_us":null,"rtt_p90_us":null,"rtt_p99_us":null,"#,
            r#""reply_ttl":null,"errors":0,"error_type":null,"error_code":null,"#,
            r#""error_name":null,"responder":null,"timeouts":2,"duplicates":0,"late":0,"#,
            r#""send_failed":0,"send_errno":null}"#,
            "\n",
        );
        assert_eq!(text, expected);
    }

    #[test]
    fn json_escaping() {
        let mut out = String::new();
        push_json_string(
            &mut out,
            "q\" b\\ n\n r\r t\t b\u{8} f\u{c} nul\0 us\u{1f} del\u{7f} é ✓",
        );
        assert_eq!(
            out,
            r#""q\" b\\ n\n r\r t\t b\b f\f nul\u0000 us\u001f del"#.to_owned() + "\u{7f} é ✓\""
        );
        // Every control character comes out escaped, never raw.
        for c in (0u8..0x20).map(char::from) {
            let mut out = String::new();
            push_json_string(&mut out, &c.to_string());
            assert!(out.chars().all(|c| c >= ' '), "{out:?}");
            assert!(out.len() >= 4, "{out:?}");
        }
    }

    #[test]
    fn jsonl_non_finite_is_null() {
        let mut row = full_row();
        row.loss_pct = Some(f64::NAN);
        let text = render(Format::Jsonl, &[row]);
        assert!(text.contains(r#""loss_pct":null,"#), "{text}");
        let text = render(Format::Csv, &[row]);
        assert!(text.contains(",5,3,,51.234,"), "{text}");
    }

    #[test]
    fn table_layout() {
        let mut named = empty_row();
        named.name = Some("gw");
        named.target = IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1));
        named.send_failed = 2;
        named.timeouts = 0;
        let text = render(Format::Table, &[full_row(), empty_row(), named]);
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines,
            [
                "target           sent  recv    loss    min ms    avg ms    max ms    p99 ms  note",
                "host \"a\", b (192.0.2.1)     5     3  40.00%     0.012     0.052     1.334     1.334  \
                 Destination Unreachable / Communication Administratively Prohibited from 198.51.100.7; \
                 1 send failed; 2 duplicates; 1 late",
                "2001:db8::1         2     0 100.00%         -         -         -         -",
                "gw (10.0.0.1)       2     0 100.00%         -         -         -         -  2 send failed",
            ]
        );
    }

    #[test]
    fn a_table_as_wide_as_its_longest_target_aligns_every_line() {
        let mut long = empty_row();
        long.target = "2001:db8:ffff:ffff:ffff:ffff:ffff:1".parse().unwrap();
        let rows = [full_row(), empty_row(), long];
        let width = rows.iter().map(table_label_width).max().unwrap();
        let mut buf = Vec::new();
        let mut sink = TableSink::with_target_width(&mut buf, width);
        sink.write_rows(&rows).unwrap();
        Box::new(sink).finish().unwrap();
        let text = String::from_utf8(buf).unwrap();
        // The "sent" column is in the same characters on every line, the header's too (at
        // the default width of 15 the long address ran into it).
        assert_eq!(text.lines().count(), 4);
        for l in text.lines() {
            let sent: String = l.chars().skip(width).take(6).collect();
            assert!(
                sent.trim() == "sent" || sent.trim().parse::<u64>().is_ok(),
                "{l:?}"
            );
        }
    }

    #[test]
    fn format_from_str() {
        assert_eq!("table".parse::<Format>().unwrap(), Format::Table);
        assert_eq!("CSV".parse::<Format>().unwrap(), Format::Csv);
        assert_eq!("jsonl".parse::<Format>().unwrap(), Format::Jsonl);
        assert_eq!("ndjson".parse::<Format>().unwrap(), Format::Jsonl);
        assert_eq!("Parquet".parse::<Format>().unwrap(), Format::Parquet);
        assert!(matches!(
            "xml".parse::<Format>(),
            Err(Error::UnknownFormat(s)) if s == "xml"
        ));
        for f in Format::ALL {
            assert_eq!(f.to_string().parse::<Format>().unwrap(), f);
        }
    }

    #[test]
    fn a_sink_is_refused_for_a_format_it_does_not_write() {
        let mut buf = Vec::new();
        for f in [Format::Text, Format::Parquet] {
            let e = sink_for(f, &mut buf).err().unwrap();
            assert_eq!(
                e.to_string(),
                format!("{f} is not a format for ping rows on a stream")
            );
        }
        for f in [Format::Table, Format::Text, Format::Parquet] {
            assert!(text_sink::<Row<'_>, _>(f, &mut buf).is_err(), "{f}");
        }
        assert!(buf.is_empty());
    }

    /// The metadata and record batches of the Parquet file at `path`.
    pub(crate) fn read_parquet(
        path: &Path,
    ) -> (parquet::file::metadata::ParquetMetaData, Vec<RecordBatch>) {
        let file = File::open(path).unwrap();
        let builder = ParquetRecordBatchReaderBuilder::try_new(file).unwrap();
        let metadata = builder.metadata().as_ref().clone();
        let batches = builder
            .build()
            .unwrap()
            .collect::<Result<Vec<_>, _>>()
            .unwrap();
        (metadata, batches)
    }

    #[test]
    fn parquet_round_trip() {
        let path = temp_path("round-trip");
        let mut sink = ParquetSink::create(
            &path,
            vec![
                ("asdic.version".into(), "0.1.0".into()),
                ("asdic.command".into(), "asdic -r 1000 192.0.2.0/24".into()),
            ],
        )
        .unwrap();
        assert_eq!(temporaries(&path).len(), 1);
        assert!(!path.exists());
        sink.write_rows(&[full_row(), empty_row()]).unwrap();
        sink.add_metadata("asdic.end", "2026-01-01T00:00:00Z");
        Box::new(sink).finish().unwrap();
        assert!(temporaries(&path).is_empty(), "temporary file left behind");

        let (metadata, batches) = read_parquet(&path);
        fs::remove_file(&path).unwrap();

        let kv: Vec<(&str, Option<&str>)> = metadata
            .file_metadata()
            .key_value_metadata()
            .unwrap()
            .iter()
            .map(|kv| (kv.key.as_str(), kv.value.as_deref()))
            .collect();
        for expected in [
            ("asdic.version", Some("0.1.0")),
            ("asdic.command", Some("asdic -r 1000 192.0.2.0/24")),
            ("asdic.end", Some("2026-01-01T00:00:00Z")),
        ] {
            assert!(kv.contains(&expected), "{expected:?} missing from {kv:?}");
        }
        for rg in metadata.row_groups() {
            for col in rg.columns() {
                assert!(
                    matches!(col.compression(), Compression::ZSTD(_)),
                    "{:?}",
                    col.compression()
                );
            }
        }

        let total: usize = batches.iter().map(RecordBatch::num_rows).sum();
        assert_eq!(total, 2);
        let batch = &batches[0];
        assert_eq!(batch.schema().fields(), schema().fields());
        let target = batch
            .column_by_name("target")
            .unwrap()
            .as_string::<i32>()
            .clone();
        assert_eq!(target.value(0), "192.0.2.1");
        assert_eq!(target.value(1), "2001:db8::1");
        let name = batch.column_by_name("name").unwrap();
        assert!(name.is_valid(0) && name.is_null(1));
        let p90 = batch
            .column_by_name("rtt_p90_us")
            .unwrap()
            .as_primitive::<Float64Type>()
            .clone();
        assert_eq!(p90.value(0), 210.0);
        assert!(p90.is_null(1));
        let error_name = batch.column_by_name("error_name").unwrap();
        assert!(error_name.is_null(1));
        assert_eq!(
            error_name.as_string::<i32>().value(0),
            "Destination Unreachable / Communication Administratively Prohibited"
        );
        let sent = batch
            .column_by_name("sent")
            .unwrap()
            .as_primitive::<UInt64Type>()
            .clone();
        assert_eq!((sent.value(0), sent.value(1)), (5, 2));
    }

    #[test]
    fn parquet_row_groups_and_batches() {
        let path = temp_path("row-groups");
        let rows: Vec<Row<'_>> = (0..ROW_GROUP_ROWS + 100)
            .map(|i| {
                let mut row = empty_row();
                row.target = IpAddr::V4(Ipv4Addr::from(i as u32));
                row.sent = i as u64;
                row
            })
            .collect();
        let mut sink = ParquetSink::create(&path, Vec::new()).unwrap();
        // Stream as a caller would, in chunks, plus one oversized slice.
        let (head, tail) = rows.split_at(3 * CHUNK_ROWS);
        for chunk in head.chunks(CHUNK_ROWS) {
            sink.write_rows(chunk).unwrap();
        }
        sink.write_rows(tail).unwrap();
        Box::new(sink).finish().unwrap();

        let (metadata, batches) = read_parquet(&path);
        fs::remove_file(&path).unwrap();
        assert!(
            metadata.num_row_groups() >= 2,
            "{}",
            metadata.num_row_groups()
        );
        assert!(
            metadata
                .row_groups()
                .iter()
                .all(|rg| rg.num_rows() <= ROW_GROUP_ROWS as i64)
        );
        let sent: Vec<u64> = batches
            .iter()
            .flat_map(|b| {
                b.column_by_name("sent")
                    .unwrap()
                    .as_primitive::<UInt64Type>()
                    .values()
                    .to_vec()
            })
            .collect();
        assert_eq!(sent.len(), ROW_GROUP_ROWS + 100);
        assert!(sent.iter().enumerate().all(|(i, &s)| s == i as u64));
    }

    #[test]
    fn parquet_dropped_unfinished_leaves_nothing() {
        let path = temp_path("dropped");
        let sink = ParquetSink::<Row<'_>>::create(&path, Vec::new()).unwrap();
        assert_eq!(temporaries(&path).len(), 1);
        drop(sink);
        assert!(temporaries(&path).is_empty());
        assert!(!path.exists());
    }

    #[test]
    fn parquet_create_in_missing_dir_fails() {
        let path = temp_path("missing-dir").join("out.parquet");
        assert!(matches!(
            ParquetSink::<Row<'_>>::create(&path, Vec::new()),
            Err(Error::Fs(asdic_fs::Error::Io { .. }))
        ));
    }

    #[test]
    fn parquet_never_replaces_a_file_and_streams_into_a_fifo() {
        let path = temp_path("exists");
        fs::write(&path, b"earlier results").unwrap();
        let e = ParquetSink::<Row<'_>>::create(&path, Vec::new()).unwrap_err();
        assert!(e.to_string().contains("--force"), "{e}");
        assert_eq!(fs::read(&path).unwrap(), b"earlier results");
        fs::remove_file(&path).unwrap();

        // A FIFO: the whole file flows through it, nothing is created beside it.
        let fifo = temp_path("fifo");
        let made = std::process::Command::new("mkfifo").arg(&fifo).status();
        if !made.is_ok_and(|s| s.success()) {
            return;
        }
        let reader = {
            let fifo = fifo.clone();
            std::thread::spawn(move || fs::read(fifo).unwrap())
        };
        let out = (0..300)
            .find_map(|_| {
                asdic_fs::Dest::resolve(&fifo, false).ok().or_else(|| {
                    std::thread::sleep(std::time::Duration::from_millis(10));
                    None
                })
            })
            .expect("the reader opened the FIFO");
        let mut sink = ParquetSink::to(out.whole().unwrap(), vec![], ROW_GROUP_ROWS).unwrap();
        sink.write_rows(&[full_row(), empty_row()]).unwrap();
        Box::new(sink).finish().unwrap();
        let bytes = reader.join().unwrap();
        let copy = temp_path("from-fifo");
        fs::write(&copy, &bytes).unwrap();
        let (_, batches) = read_parquet(&copy);
        assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 2);
        assert!(temporaries(&fifo).is_empty());
        fs::remove_file(&copy).unwrap();
        fs::remove_file(&fifo).unwrap();
    }

    /// The temporaries asdic has open for `path` (`.NAME.*.tmp` beside it).
    pub(crate) fn temporaries(path: &Path) -> Vec<PathBuf> {
        let name = path.file_name().unwrap().to_string_lossy().into_owned();
        fs::read_dir(path.parent().unwrap())
            .unwrap()
            .map(|e| e.unwrap().path())
            .filter(|p| {
                let n = p.file_name().unwrap().to_string_lossy();
                n.starts_with(&format!(".{name}.")) && n.ends_with(".tmp")
            })
            .collect()
    }

    /// The cli's way of streaming an aggregator's rows into any ping sink.
    fn write_all<'a>(agg: &'a crate::Aggregator, sink: &mut dyn Sink<Row<'a>>) -> Result<()> {
        write_chunked(sink, agg.rows())
    }

    /// The call shapes `asdic ping` uses compile, with no annotation on the sinks, and write
    /// the aggregator's rows.
    #[test]
    fn ping_call_shapes() {
        let targets = vec![
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 1)),
            IpAddr::V4(Ipv4Addr::new(192, 0, 2, 2)),
        ];
        let mut agg = crate::Aggregator::new(targets.clone())
            .with_names(vec![Some("a".to_owned()), None])
            .unwrap();
        agg.record(&asdic_core::Event {
            probe: Some(0),
            cookie: 0,
            target: targets[0],
            sent_ns: Some(1),
            attempt: 0,
            outcome: asdic_core::Outcome::Reply {
                rtt_ns: 2_000,
                ttl: Some(64),
                from: targets[0],
            },
        });

        let mut buf = Vec::new();
        {
            let mut sink = sink_for(Format::Csv, Box::new(BufWriter::new(&mut buf))).unwrap();
            write_all(&agg, sink.as_mut()).unwrap();
            sink.finish().unwrap();
        }
        let text = String::from_utf8(buf).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 3, "{text}");
        assert!(lines[1].starts_with("192.0.2.1,a,1,1,0,2,2,2,2,0,2,2,2,64,0,"));
        assert!(lines[2].starts_with("192.0.2.2,,0,0,,"));

        let path = temp_path("call-shapes");
        let mut pq = ParquetSink::create(&path, vec![("k".to_owned(), "v".to_owned())]).unwrap();
        pq.add_metadata("asdic.end_unix_ns", 5.to_string());
        write_all(&agg, &mut pq).unwrap();
        Box::new(pq).finish().unwrap();
        let (_, batches) = read_parquet(&path);
        fs::remove_file(&path).unwrap();
        assert_eq!(batches.iter().map(RecordBatch::num_rows).sum::<usize>(), 2);
    }
}
