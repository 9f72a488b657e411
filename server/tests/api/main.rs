//! Integration tests: a real server on port 0, fresh state per test, on
//! SQLite by default and PostgreSQL when DATABASE_URL is set.

mod accounts;
mod helpers;
mod money;
mod projects;
mod quality;
mod work;
