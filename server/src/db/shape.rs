//! Statements whose text does not depend on how many rows they touch.
//!
//! A write batch's IN lists, CASE arms and multi-row inserts grow with the
//! batch, so on PostgreSQL nearly every batch brought statements its
//! connection had not prepared: each cost a round trip to parse and plan
//! before the one that ran it (13 of an answer batch's 25), and the
//! statement cache turned over. Here, on PostgreSQL, a set travels as one
//! value (an array or a JSON document) in a statement of fixed
//! text. On SQLite, where preparing is in-process and the writer keeps 400
//! statements, they stay plain lists.

use sea_orm::sea_query::{ArrayType, CaseStatement, Expr, ExprTrait, IntoColumnRef};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ColumnType, ConnectionTrait, DbBackend, DbErr, EntityName,
    EntityTrait, IdenStatic, IntoActiveModel, Iterable, Statement, Value,
};
use serde_json::Value as Json;

/// `col IN (ids)`.
pub fn any_of(
    backend: DbBackend,
    col: impl IntoColumnRef,
    ids: impl IntoIterator<Item = i64>,
) -> Expr {
    let ids: Vec<i64> = ids.into_iter().collect();
    match backend {
        DbBackend::Postgres => {
            Expr::cust_with_exprs("$1 = ANY($2)", [Expr::col(col), Expr::val(pg_array(&ids))])
        }
        _ => Expr::col(col).is_in(ids),
    }
}

/// `id IN (ids)`, for an UPDATE of non-key columns that may meet another
/// transaction's batch on the same rows: on PostgreSQL the rows are locked
/// first, in id order, by a subquery (`ORDER BY id FOR NO KEY UPDATE`, the
/// lock such an UPDATE takes anyway: foreign-key checks of inserts
/// elsewhere, which share-lock the key, do not wait for it), so two
/// batches on overlapping rows queue instead of deadlocking. An UPDATE
/// locks rows in the order its plan visits them, and a bitmap scan visits
/// them in heap order, which moves as rows are updated: three replicas'
/// answer batches deadlocked on their item counts about once a run.
/// SQLite writes one transaction at a time.
pub fn any_of_locked_in_order<E: EntityTrait>(
    backend: DbBackend,
    entity: E,
    id: E::Column,
    ids: impl IntoIterator<Item = i64>,
) -> Expr {
    match backend {
        DbBackend::Postgres => {
            let locked = sea_orm::sea_query::Query::select()
                .column(id)
                .from(entity)
                .and_where(any_of(backend, id, ids))
                .order_by(id, sea_orm::sea_query::Order::Asc)
                .lock(sea_orm::sea_query::LockType::NoKeyUpdate)
                .to_owned();
            Expr::col(id).in_subquery(locked)
        }
        _ => any_of(backend, id, ids),
    }
}

/// `col` plus, for each row, the amount paired with its `id` (of SQL type
/// `sql_type` on PostgreSQL), or `zero` for a row not listed: counters and
/// balances moved row by row in one statement.
pub fn plus_per_id(
    backend: DbBackend,
    id: impl IntoColumnRef + Clone,
    col: impl IntoColumnRef,
    amounts: &[(i64, Value)],
    sql_type: &'static str,
    zero: Value,
) -> Expr {
    Expr::col(col).add(per_id(backend, id, amounts, sql_type, Expr::val(zero)))
}

/// For each row, the value paired with its `id` (null included; of SQL
/// type `sql_type` on PostgreSQL), or `otherwise` for a row not listed.
///
/// On PostgreSQL the values travel as one JSON text, cast in a subquery of
/// its own: the batch writers keep generic plans, where a cast of a
/// parameter in the row's expression is evaluated, and the whole text
/// parsed, again for every row (the ledger's balance update: 297 us a
/// call under load); a subquery without outer references runs once per
/// execution (2,000 rows: 430 ms against 12).
pub fn per_id(
    backend: DbBackend,
    id: impl IntoColumnRef + Clone,
    pairs: &[(i64, Value)],
    sql_type: &'static str,
    otherwise: Expr,
) -> Expr {
    match backend {
        DbBackend::Postgres => {
            let ids: Vec<i64> = pairs.iter().map(|(i, _)| *i).collect();
            let values: Vec<Json> = pairs.iter().map(|(_, v)| json_of(v)).collect();
            Expr::cust_with_exprs(
                format!(
                    "CASE WHEN array_position($2, $3) IS NULL THEN $4 \
                     ELSE CAST((SELECT CAST($1 AS jsonb)) ->> \
                     (array_position($2, $3) - 1) AS {sql_type}) END"
                ),
                [
                    Expr::val(Json::Array(values).to_string()),
                    Expr::val(pg_array(&ids)),
                    Expr::col(id),
                    otherwise,
                ],
            )
        }
        _ => {
            let mut case = CaseStatement::new();
            for (i, v) in pairs {
                case = case.case(
                    Expr::col(id.clone()).eq(Expr::val(*i)),
                    Expr::val(v.clone()),
                );
            }
            case.finally(otherwise).into()
        }
    }
}

/// Inserts `rows` (each with the same columns set) and returns them as
/// written, in no particular order.
pub async fn insert_rows<A>(
    conn: &impl ConnectionTrait,
    rows: Vec<A>,
) -> Result<Vec<<A::Entity as EntityTrait>::Model>, DbErr>
where
    A: ActiveModelTrait + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    insert_rows_skipping_conflicts(conn, rows, &[]).await
}

/// [`insert_rows`], skipping each row that would break the unique index
/// on `conflict` (`ON CONFLICT DO NOTHING`; none: a plain insert); returns
/// only the rows written.
pub async fn insert_rows_skipping_conflicts<A>(
    conn: &impl ConnectionTrait,
    rows: Vec<A>,
    conflict: &[<A::Entity as EntityTrait>::Column],
) -> Result<Vec<<A::Entity as EntityTrait>::Model>, DbErr>
where
    A: ActiveModelTrait + Send,
    <A::Entity as EntityTrait>::Model: IntoActiveModel<A>,
{
    let backend = conn.get_database_backend();
    let columns: Vec<(<A::Entity as EntityTrait>::Column, &'static str)> = match rows.first() {
        Some(first) if backend == DbBackend::Postgres => {
            let set: Option<Vec<_>> = <A::Entity as EntityTrait>::Column::iter()
                .filter(|c| first.get(*c).is_set())
                .map(|c| pg_type(c.def().get_column_type()).map(|t| (c, t)))
                .collect();
            set.unwrap_or_default()
        }
        _ => Vec::new(),
    };
    if columns.is_empty() {
        if rows.is_empty() {
            return Ok(Vec::new());
        }
        let insert = A::Entity::insert_many(rows);
        if conflict.is_empty() {
            return insert.exec_with_returning(conn).await;
        }
        return match insert
            .on_conflict_do_nothing_on(conflict.iter().copied())
            .exec_with_returning_many(conn)
            .await?
        {
            sea_orm::TryInsertResult::Inserted(rows) => Ok(rows),
            sea_orm::TryInsertResult::Empty | sea_orm::TryInsertResult::Conflicted => {
                Ok(Vec::new())
            }
        };
    }
    let docs: Vec<Json> = rows
        .iter()
        .map(|r| {
            Json::Object(
                columns
                    .iter()
                    .map(|(c, _)| {
                        let v = r.get(*c).into_value().map_or(Json::Null, |v| json_of(&v));
                        (c.as_str().to_owned(), v)
                    })
                    .collect(),
            )
        })
        .collect();
    let quoted = |cols: &mut dyn Iterator<Item = &str>| {
        cols.map(|c| format!("\"{c}\""))
            .collect::<Vec<_>>()
            .join(", ")
    };
    let names = quoted(&mut columns.iter().map(|(c, _)| c.as_str()));
    let types = columns
        .iter()
        .map(|(c, t)| format!("\"{}\" {t}", c.as_str()))
        .collect::<Vec<_>>()
        .join(", ");
    let on_conflict = match conflict.is_empty() {
        true => String::new(),
        false => format!(
            " ON CONFLICT ({}) DO NOTHING",
            quoted(&mut conflict.iter().map(|c| c.as_str()))
        ),
    };
    let table = A::Entity::default().table_name().to_owned();
    let sql = format!(
        "INSERT INTO \"{table}\" ({names}) SELECT {names} \
         FROM jsonb_to_recordset(CAST($1 AS jsonb)) AS r({types}){on_conflict} RETURNING *"
    );
    A::Entity::find()
        .from_raw_sql(Statement::from_sql_and_values(
            backend,
            sql,
            [Value::from(Json::Array(docs).to_string())],
        ))
        .all(conn)
        .await
}

/// `(a, b) IN (pairs)`: rows matching any of the (text, id) pairs.
pub fn pairs_in(
    backend: DbBackend,
    (a, b): (impl IntoColumnRef + Clone, impl IntoColumnRef + Clone),
    pairs: &[(&str, i64)],
) -> sea_orm::Condition {
    match backend {
        DbBackend::Postgres => {
            let texts: Vec<Value> = pairs.iter().map(|(t, _)| Value::from(*t)).collect();
            let ids: Vec<i64> = pairs.iter().map(|(_, i)| *i).collect();
            sea_orm::Condition::all().add(Expr::cust_with_exprs(
                "($1, $2) IN (SELECT * FROM unnest($3, $4))",
                [
                    Expr::col(a),
                    Expr::col(b),
                    Expr::val(Value::Array(ArrayType::String, Some(Box::new(texts)))),
                    Expr::val(pg_array(&ids)),
                ],
            ))
        }
        _ => {
            // Grouped by the text: `a = t AND b IN (ids)` per distinct t.
            let mut sorted = pairs.to_vec();
            sorted.sort_unstable();
            let mut any = sea_orm::Condition::any();
            for group in sorted.chunk_by(|x, y| x.0 == y.0) {
                any = any.add(
                    Expr::col(a.clone())
                        .eq(group[0].0)
                        .and(Expr::col(b.clone()).is_in(group.iter().map(|(_, i)| *i))),
                );
            }
            any
        }
    }
}

/// Ids as one `bigint[]` parameter. They used to travel as the text of an
/// array literal, cast in the statement; that cast is not folded
/// (`array_in` is only stable), so wherever a plan tested the ids row by
/// row, every row parsed the whole literal again: the receipt chainer's
/// postings read, a hash join over a sequential scan, took 70 to 170 ms a
/// page of 200 and a third of PostgreSQL's CPU in a load run.
pub(crate) fn pg_array(ids: &[i64]) -> Value {
    Value::Array(
        ArrayType::BigInt,
        Some(Box::new(ids.iter().map(|&i| Value::from(i)).collect())),
    )
}

/// The SQL type a JSON field is read as, for the column types rows here
/// carry; none for others (those inserts keep the multi-row form).
fn pg_type(t: &ColumnType) -> Option<&'static str> {
    Some(match t {
        ColumnType::BigInteger => "bigint",
        ColumnType::Integer => "integer",
        ColumnType::SmallInteger => "smallint",
        ColumnType::String(_) | ColumnType::Text | ColumnType::Char(_) => "text",
        ColumnType::Boolean => "boolean",
        ColumnType::Double => "double precision",
        _ => return None,
    })
}

fn json_of(v: &Value) -> Json {
    match v {
        Value::Bool(Some(b)) => Json::from(*b),
        Value::SmallInt(Some(i)) => Json::from(*i),
        Value::Int(Some(i)) => Json::from(*i),
        Value::BigInt(Some(i)) => Json::from(*i),
        Value::Double(Some(f)) => Json::from(*f),
        Value::String(Some(s)) => Json::from(s.as_str()),
        _ => Json::Null,
    }
}
