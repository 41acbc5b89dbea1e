//! The PostgreSQL side: connections, table DDL, batching and the apply stage.

pub mod batch;
pub mod case_fold;
pub mod connect;
pub mod copy;
pub mod ddl;
pub mod error;
pub mod executor;
pub mod postgis;
pub mod postgres;
pub mod sql;
