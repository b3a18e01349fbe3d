//! Reading records: by id, lists with filters, sorting, quick search and
//! bounded paging, and aggregates, all in SQL. Every read takes the caller's
//! [`Access`]: there is no read path without row-level filtering.

pub mod load;
