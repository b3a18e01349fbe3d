//! The record API of scripts: `find`, `get`, `create` and `update`.
//!
//! Rhai functions are synchronous and the database is not, and a hook must
//! read and write inside the transaction of the change it belongs to. So a
//! hook runs on a blocking thread, and these functions send each call to the
//! task that holds the transaction and wait for its answer. The channel to
//! that task is the running thread's: outside a hook there is none, and the
//! functions say they are unavailable (validation rules and computed fields
//! stay pure).

use std::cell::RefCell;

use rhai::{Dynamic, Engine, EvalAltResult};
use serde_json::{Map, Value as Json};
use tokio::sync::{mpsc, oneshot};

use crate::write::prepare::json_of;

/// One call of the record API.
#[derive(Debug)]
pub enum Call {
    /// Records of an entity matching a filter (a map in the filter language).
    Find {
        entity: String,
        filter: Map<String, Json>,
    },
    /// One record by id; `()` when there is none the hook may see.
    Get { entity: String, id: i64 },
    /// A new record; the answer is the record as stored.
    Create {
        entity: String,
        values: Map<String, Json>,
    },
    /// Changed fields of a record; the answer is the record as stored.
    Update {
        entity: String,
        id: i64,
        values: Map<String, Json>,
    },
}

/// A call and where its answer goes: the value (records typed as scripts see
/// them: money as decimals), or what went wrong.
pub type Request = (Call, oneshot::Sender<Result<Dynamic, String>>);

thread_local! {
    static CALLS: RefCell<Option<mpsc::UnboundedSender<Request>>> = const { RefCell::new(None) };
}

/// Connects this thread's record API to `sender` until the guard drops.
pub fn connect(sender: mpsc::UnboundedSender<Request>) -> Connected {
    CALLS.with(|c| *c.borrow_mut() = Some(sender));
    Connected
}

/// Disconnects the thread's record API when dropped.
pub struct Connected;

impl Drop for Connected {
    fn drop(&mut self) {
        CALLS.with(|c| *c.borrow_mut() = None);
    }
}

/// Registers the record API on the engine every script runs on.
pub fn register(engine: &mut Engine) {
    engine.register_fn(
        "find",
        |entity: &str, filter: rhai::Map| -> Result<Dynamic, Box<EvalAltResult>> {
            call(Call::Find {
                entity: entity.to_owned(),
                filter: map_of(filter),
            })
        },
    );
    engine.register_fn(
        "get",
        |entity: &str, id: i64| -> Result<Dynamic, Box<EvalAltResult>> {
            call(Call::Get {
                entity: entity.to_owned(),
                id,
            })
        },
    );
    engine.register_fn(
        "create",
        |entity: &str, values: rhai::Map| -> Result<Dynamic, Box<EvalAltResult>> {
            call(Call::Create {
                entity: entity.to_owned(),
                values: map_of(values),
            })
        },
    );
    engine.register_fn(
        "update",
        |entity: &str, id: i64, values: rhai::Map| -> Result<Dynamic, Box<EvalAltResult>> {
            call(Call::Update {
                entity: entity.to_owned(),
                id,
                values: map_of(values),
            })
        },
    );
}

fn call(call: Call) -> Result<Dynamic, Box<EvalAltResult>> {
    let Some(sender) = CALLS.with(|c| c.borrow().clone()) else {
        return Err(
            "`find`, `get`, `create` and `update` are only available in hooks and jobs".into(),
        );
    };
    let (answer, answered) = oneshot::channel();
    sender
        .send((call, answer))
        .map_err(|_| "the record API has closed")?;
    match answered.blocking_recv() {
        Ok(Ok(value)) => Ok(value),
        Ok(Err(message)) => Err(message.into()),
        Err(_) => Err("the record API has closed".into()),
    }
}

/// A script's map as JSON, value by value (exact decimals become strings).
pub fn map_of(map: rhai::Map) -> Map<String, Json> {
    map.into_iter()
        .map(|(k, v)| (k.to_string(), json_of(v)))
        .collect()
}
