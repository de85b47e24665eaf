//! Typed columns and the row-by-row builder that turns decoded events into Arrow batches.
//!
//! A table declares its columns once ([`Column`]: name, [`Ty`], nullable); a
//! [`BatchBuilder`] holds one Arrow builder per column the query reads (the values of the
//! others are dropped as they are set). Each decoded record becomes one
//! row through a [`Row`]: the table's decoder sets the columns the event has, and every
//! column it leaves unset is null in that row. A non-nullable column left unset makes
//! [`BatchBuilder::finish`] fail, so a table definition that forgets a field is caught by
//! the first batch rather than silently padded.

use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float64Builder, Int32Builder, Int64Builder, StringBuilder,
    TimestampMillisecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef, TimeUnit};
use datafusion::arrow::error::ArrowError;
use datafusion::arrow::record_batch::{RecordBatch, RecordBatchOptions};

/// The time zone of every timestamp column: event times are epoch milliseconds, UTC.
pub(crate) const UTC: &str = "UTC";

/// A column's type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Ty {
    /// Text.
    Utf8,
    /// 32-bit integer.
    Int32,
    /// 64-bit integer.
    Int64,
    /// Double.
    Float64,
    /// Boolean.
    Bool,
    /// Epoch milliseconds as an Arrow timestamp (ms, UTC).
    Time,
}

impl Ty {
    fn data_type(self) -> DataType {
        match self {
            Ty::Utf8 => DataType::Utf8,
            Ty::Int32 => DataType::Int32,
            Ty::Int64 => DataType::Int64,
            Ty::Float64 => DataType::Float64,
            Ty::Bool => DataType::Boolean,
            Ty::Time => DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into())),
        }
    }
}

/// One column of a table.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Column {
    /// Its name in SQL.
    pub(crate) name: &'static str,
    /// Its type.
    pub(crate) ty: Ty,
    /// Whether a row may leave it null.
    pub(crate) nullable: bool,
}

/// A column every row has.
pub(crate) const fn req(name: &'static str, ty: Ty) -> Column {
    Column {
        name,
        ty,
        nullable: false,
    }
}

/// A column a row may leave null.
pub(crate) const fn opt(name: &'static str, ty: Ty) -> Column {
    Column {
        name,
        ty,
        nullable: true,
    }
}

/// The Arrow schema of `columns`.
pub(crate) fn schema(columns: &[Column]) -> SchemaRef {
    Arc::new(Schema::new(
        columns
            .iter()
            .map(|c| Field::new(c.name, c.ty.data_type(), c.nullable))
            .collect::<Vec<_>>(),
    ))
}

/// A value for one cell.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Value<'a> {
    /// Text.
    Str(&'a str),
    /// 32-bit integer.
    I32(i32),
    /// 64-bit integer.
    I64(i64),
    /// Double.
    F64(f64),
    /// Boolean.
    Bool(bool),
    /// Epoch milliseconds.
    Time(i64),
}

impl<'a> From<&'a str> for Value<'a> {
    fn from(v: &'a str) -> Self {
        Value::Str(v)
    }
}

impl<'a> From<&'a String> for Value<'a> {
    fn from(v: &'a String) -> Self {
        Value::Str(v)
    }
}

impl From<i32> for Value<'_> {
    fn from(v: i32) -> Self {
        Value::I32(v)
    }
}

impl From<i64> for Value<'_> {
    fn from(v: i64) -> Self {
        Value::I64(v)
    }
}

impl From<f64> for Value<'_> {
    fn from(v: f64) -> Self {
        Value::F64(v)
    }
}

impl From<bool> for Value<'_> {
    fn from(v: bool) -> Self {
        Value::Bool(v)
    }
}

enum Builder {
    Utf8(StringBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float64(Float64Builder),
    Bool(BooleanBuilder),
    Time(TimestampMillisecondBuilder),
}

impl Builder {
    fn new(ty: Ty) -> Self {
        match ty {
            Ty::Utf8 => Builder::Utf8(StringBuilder::new()),
            Ty::Int32 => Builder::Int32(Int32Builder::new()),
            Ty::Int64 => Builder::Int64(Int64Builder::new()),
            Ty::Float64 => Builder::Float64(Float64Builder::new()),
            Ty::Bool => Builder::Bool(BooleanBuilder::new()),
            Ty::Time => Builder::Time(TimestampMillisecondBuilder::new().with_timezone(UTC)),
        }
    }

    /// Appends `value`; `false` when its type is not the column's.
    fn append(&mut self, value: Value<'_>) -> bool {
        match (self, value) {
            (Builder::Utf8(b), Value::Str(v)) => b.append_value(v),
            (Builder::Int32(b), Value::I32(v)) => b.append_value(v),
            (Builder::Int64(b), Value::I64(v)) => b.append_value(v),
            (Builder::Float64(b), Value::F64(v)) => b.append_value(v),
            (Builder::Bool(b), Value::Bool(v)) => b.append_value(v),
            (Builder::Time(b), Value::Time(v)) => b.append_value(v),
            _ => return false,
        }
        true
    }

    fn append_null(&mut self) {
        match self {
            Builder::Utf8(b) => b.append_null(),
            Builder::Int32(b) => b.append_null(),
            Builder::Int64(b) => b.append_null(),
            Builder::Float64(b) => b.append_null(),
            Builder::Bool(b) => b.append_null(),
            Builder::Time(b) => b.append_null(),
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match self {
            Builder::Utf8(b) => Arc::new(b.finish()),
            Builder::Int32(b) => Arc::new(b.finish()),
            Builder::Int64(b) => Arc::new(b.finish()),
            Builder::Float64(b) => Arc::new(b.finish()),
            Builder::Bool(b) => Arc::new(b.finish()),
            Builder::Time(b) => Arc::new(b.finish()),
        }
    }
}

/// Rows of one table, accumulated into a record batch of the columns a query reads.
pub(crate) struct BatchBuilder {
    columns: &'static [Column],
    /// The batch's schema: the projected columns.
    schema: SchemaRef,
    /// The projected columns (indexes into `columns`), in the batch's order.
    projection: Vec<usize>,
    /// One per column of the table; `None` for a column the query does not read, whose
    /// values are dropped as they are set.
    builders: Vec<Option<Builder>>,
    set: Vec<bool>,
    rows: usize,
}

impl BatchBuilder {
    /// An empty batch of every one of `columns` (whose Arrow schema is `schema`).
    #[cfg(test)]
    pub(crate) fn new(columns: &'static [Column], schema: SchemaRef) -> Self {
        Self::projected(columns, schema, None)
    }

    /// An empty batch of the columns `projection` names (all when `None`), in its order, of
    /// the table whose columns are `columns`; `schema` is the table's Arrow schema
    /// projected so.
    pub(crate) fn projected(
        columns: &'static [Column],
        schema: SchemaRef,
        projection: Option<&[usize]>,
    ) -> Self {
        let projection: Vec<usize> = match projection {
            Some(p) => p.to_vec(),
            None => (0..columns.len()).collect(),
        };
        let mut builders: Vec<Option<Builder>> = columns.iter().map(|_| None).collect();
        for &i in &projection {
            builders[i] = Some(Builder::new(columns[i].ty));
        }
        Self {
            columns,
            schema,
            projection,
            builders,
            set: vec![false; columns.len()],
            rows: 0,
        }
    }

    /// Rows so far.
    pub(crate) fn rows(&self) -> usize {
        self.rows
    }

    /// Starts a row; it ends when the returned [`Row`] is dropped. A row none of whose
    /// columns was set is not added.
    pub(crate) fn row(&mut self) -> Row<'_> {
        Row {
            batch: self,
            written: false,
        }
    }

    /// The rows so far as a record batch; the builder starts empty again.
    pub(crate) fn finish(&mut self) -> Result<RecordBatch, ArrowError> {
        let rows = std::mem::take(&mut self.rows);
        let arrays = self
            .projection
            .iter()
            .filter_map(|&i| self.builders[i].as_mut().map(Builder::finish))
            .collect();
        // The row count says how many rows a batch of no column holds (`count(*)`).
        RecordBatch::try_new_with_options(
            self.schema.clone(),
            arrays,
            &RecordBatchOptions::new().with_row_count(Some(rows)),
        )
    }
}

/// One row being written: when it is dropped, unset columns become null — unless no
/// column was set at all, which adds no row.
pub(crate) struct Row<'b> {
    batch: &'b mut BatchBuilder,
    written: bool,
}

impl Row<'_> {
    /// Sets column `name` to `value`.
    pub(crate) fn set<'v>(&mut self, name: &str, value: impl Into<Value<'v>>) {
        let value = value.into();
        let batch = &mut *self.batch;
        let Some(i) = batch.columns.iter().position(|c| c.name == name) else {
            // A table definition naming a column it does not declare: a bug, caught by the
            // tests of every table (the value would be missing from the output).
            tracing::error!(column = name, "no such column; value dropped");
            debug_assert!(false, "no column {name}");
            return;
        };
        if batch.set[i] {
            debug_assert!(false, "column {name} set twice");
            return;
        }
        let Some(builder) = &mut batch.builders[i] else {
            // Not read by the query: the row has it, the batch does not.
            batch.set[i] = true;
            self.written = true;
            return;
        };
        if builder.append(value) {
            batch.set[i] = true;
            self.written = true;
        } else {
            tracing::error!(column = name, ?value, "value of the wrong type; dropped");
            debug_assert!(false, "wrong type for column {name}: {value:?}");
        }
    }

    /// Sets column `name` to `value`, or leaves it null.
    pub(crate) fn set_opt<'v, V: Into<Value<'v>>>(&mut self, name: &str, value: Option<V>) {
        if let Some(v) = value {
            self.set(name, v);
        }
    }

    /// Sets the timestamp column `name` to `ms` (epoch milliseconds).
    pub(crate) fn time(&mut self, name: &str, ms: i64) {
        self.set(name, Value::Time(ms));
    }

    /// Sets the timestamp column `name` to `ms`, or leaves it null.
    pub(crate) fn time_opt(&mut self, name: &str, ms: Option<i64>) {
        if let Some(ms) = ms {
            self.time(name, ms);
        }
    }
}

impl Drop for Row<'_> {
    fn drop(&mut self) {
        if !self.written {
            return;
        }
        let batch = &mut *self.batch;
        for (builder, set) in batch.builders.iter_mut().zip(batch.set.iter_mut()) {
            if !*set && let Some(builder) = builder {
                builder.append_null();
            }
            *set = false;
        }
        batch.rows += 1;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::{Float64Type, TimestampMillisecondType};

    static COLUMNS: [Column; 3] = [
        req("name", Ty::Utf8),
        opt("temp", Ty::Float64),
        req("at", Ty::Time),
    ];

    #[test]
    fn unset_columns_are_null_and_required_ones_must_be_set() {
        let mut b = BatchBuilder::new(&COLUMNS, schema(&COLUMNS));
        {
            let mut row = b.row();
            row.set("name", "a");
            row.set_opt("temp", Some(1.5));
            row.time("at", 7);
        }
        {
            let mut row = b.row();
            row.set("name", "b");
            row.set_opt::<f64>("temp", None);
            row.time("at", 8);
        }
        assert_eq!(b.rows(), 2);
        let batch = b.finish().expect("batch");
        let temp = batch.column(1).as_primitive::<Float64Type>();
        assert_eq!((temp.value(0), temp.is_null(1)), (1.5, true));
        let at = batch.column(2).as_primitive::<TimestampMillisecondType>();
        assert_eq!((at.value(0), at.value(1)), (7, 8));
        assert_eq!(
            batch.schema().field(2).data_type(),
            &DataType::Timestamp(TimeUnit::Millisecond, Some(UTC.into()))
        );

        // A row that leaves a required column unset fails the batch.
        {
            let mut row = b.row();
            row.time("at", 9);
        }
        assert!(b.finish().is_err());
    }

    #[test]
    fn a_projected_batch_holds_only_the_columns_read_in_their_order() {
        let table = schema(&COLUMNS);
        let write = |b: &mut BatchBuilder| {
            for (name, at) in [("a", 7), ("b", 8), ("c", 9)] {
                let mut row = b.row();
                row.set("name", name);
                row.set_opt("temp", Some(f64::from(at as i32) / 2.0));
                row.time("at", at);
            }
        };
        let projected = |p: &[usize]| Arc::new(table.project(p).expect("projection"));
        let mut b = BatchBuilder::projected(&COLUMNS, projected(&[2, 0]), Some(&[2, 0]));
        write(&mut b);
        let batch = b.finish().expect("batch");
        assert_eq!(batch.num_columns(), 2);
        assert_eq!(batch.schema().field(0).name(), "at");
        assert_eq!(batch.schema().field(1).name(), "name");
        let at = batch.column(0).as_primitive::<TimestampMillisecondType>();
        assert_eq!((at.value(0), at.value(2)), (7, 9));
        assert_eq!(batch.column(1).as_string::<i32>().value(1), "b");

        // No column read (`count(*)`): the batch still says how many rows there were.
        let mut b = BatchBuilder::projected(&COLUMNS, projected(&[]), Some(&[]));
        write(&mut b);
        let batch = b.finish().expect("batch");
        assert_eq!((batch.num_columns(), batch.num_rows()), (0, 3));
        // and starts empty again.
        assert_eq!(b.finish().expect("batch").num_rows(), 0);
    }
}
