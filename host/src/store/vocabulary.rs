//! The words the store keeps: where a task is, which stage and phase a row belongs to, who made
//! it, how an attempt ended. Each is an enum with one stored name per variant; the schema's
//! `CHECK` constraints hold the same names, so a row can only say what the code can read back.

use std::fmt;

use rusqlite::types::{FromSql, FromSqlError, FromSqlResult, ToSql, ToSqlOutput, ValueRef};

/// Declares an enum whose variants are stored and shown as fixed names, with `name`,
/// `from_name`, `ALL`, `Display`, serde as the name, and SQLite conversions.
macro_rules! stored_names {
    (
        $(#[$meta:meta])*
        pub enum $name:ident { $( $(#[$vmeta:meta])* $variant:ident = $text:literal, )+ }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum $name { $( $(#[$vmeta])* $variant, )+ }

        impl $name {
            /// Every variant, in order.
            pub const ALL: &[$name] = &[$($name::$variant),+];

            /// The name stored and shown.
            pub fn name(self) -> &'static str {
                match self { $($name::$variant => $text,)+ }
            }

            /// The variant a stored name stands for.
            pub fn from_name(name: &str) -> Option<$name> {
                match name { $($text => Some($name::$variant),)+ _ => None }
            }

            /// The names as a SQL list (`'a', 'b'`), for `CHECK` constraints.
            pub fn sql_list() -> String {
                [$(concat!("'", $text, "'")),+].join(", ")
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.name())
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.name())
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                $name::from_name(&text).ok_or_else(|| {
                    serde::de::Error::unknown_variant(&text, &[$($text),+])
                })
            }
        }

        impl ToSql for $name {
            fn to_sql(&self) -> rusqlite::Result<ToSqlOutput<'_>> {
                Ok(ToSqlOutput::from(self.name()))
            }
        }

        impl FromSql for $name {
            fn column_result(value: ValueRef<'_>) -> FromSqlResult<Self> {
                let text = value.as_str()?;
                $name::from_name(text).ok_or_else(|| {
                    FromSqlError::Other(format!(
                        "`{text}` is not a {} this gaffer knows",
                        stringify!($name)
                    ).into())
                })
            }
        }
    };
}

stored_names! {
    /// Where a task is in its life.
    pub enum TaskState {
        Queued = "queued",
        /// Being worked on, under a lease; the stage says where.
        Running = "running",
        Merged = "merged",
        /// The verifier rejected an attempt; the task waits for the next one.
        RejectedRequeued = "rejected-requeued",
        /// An error outside any plugin (git, the test command missing).
        Failed = "failed",
        BudgetExhausted = "budget-exhausted",
        NeedsHuman = "needs-human",
    }
}

stored_names! {
    /// A step of an attempt. Ledger rows belong to the first four; `merge` is only where a
    /// running task can be.
    pub enum Stage {
        Route = "route",
        Implement = "implement",
        Check = "check",
        Verify = "verify",
        Merge = "merge",
    }
}

stored_names! {
    /// The work phase of an agent's model call, for the economics (where the tokens went).
    pub enum Phase {
        ReadTask = "read-task",
        Explore = "explore",
        Implement = "implement",
        Iterate = "iterate",
    }
}

impl Phase {
    /// The phase of an agent's next model call, by how far its work has come: its first call
    /// reads the task; after a command failed it iterates (until it changes a file again);
    /// after a file changed it implements; before, it explores.
    pub fn of_work(first_call: bool, failing: bool, changed: bool) -> Phase {
        if first_call {
            Phase::ReadTask
        } else if failing {
            Phase::Iterate
        } else if changed {
            Phase::Implement
        } else {
            Phase::Explore
        }
    }
}

stored_names! {
    /// Who made a ledger row.
    pub enum Role {
        Agent = "agent",
        Router = "router",
        Verifier = "verifier",
        Hook = "hook",
    }
}

stored_names! {
    /// How a finished attempt ended.
    pub enum AttemptOutcome {
        Approved = "approved",
        Rejected = "rejected",
        NeedsHuman = "needs-human",
        BudgetExhausted = "budget-exhausted",
        Failed = "failed",
        /// Approved, but its change conflicted with the target branch.
        Conflict = "conflict",
    }
}

stored_names! {
    /// Where a ledger row's money is: held against the caps, on the wire, booked, or given back.
    pub enum RowState {
        Reserved = "reserved",
        Sent = "sent",
        Settled = "settled",
        Released = "released",
    }
}

stored_names! {
    /// What rejected an attempt, as the pipeline knew it when the attempt ended.
    pub enum RejectionCause {
        /// The project's tests failed (the verifier, or without one the built-in bar, rejected
        /// failing tests; or they failed once merged onto a target that had moved).
        Tests = "tests",
        /// The team's hooks denied the change (`on-diff`, on the attempt or on the merge).
        Hooks = "hooks",
        /// The verifier rejected a change whose tests passed or did not run.
        Verifier = "verifier",
        /// Anything else: the attempt changed nothing, or its change conflicted with the target.
        Other = "other",
    }
}

stored_names! {
    /// How sure a charged amount is: what a finance reader needs beside the figure itself.
    pub enum Certainty {
        /// From the provider's usage at the configured prices (or a local model's measured
        /// power), within what was reserved.
        Measured = "measured",
        /// The reservation charged because the usage is unknown: no usage block, a reply cut
        /// off or unreadable, a timeout after the request left, recovered after a crash.
        Estimated = "estimated",
        /// From the usage, but above what was reserved (the caps it crossed are closed).
        Overrun = "overrun",
    }
}

stored_names! {
    /// A level at which a money cap applies, with the rows it covers.
    pub enum CapLevel {
        /// One model call: the reservation itself.
        Call = "call",
        /// One attempt at a task (task and attempt number).
        Attempt = "attempt",
        /// Everything spent on a task, across runs.
        Task = "task",
        /// One `gaffer run`.
        Run = "run",
        /// The store's current UTC day.
        Day = "day",
        /// The store's current UTC month.
        Month = "month",
        /// One model in the store's current UTC month.
        Model = "model",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip_through_text_serde_and_sql() {
        for stage in Stage::ALL {
            assert_eq!(Stage::from_name(stage.name()), Some(*stage));
            let json = serde_json::to_string(stage).unwrap();
            assert_eq!(json, format!("\"{}\"", stage.name()));
            assert_eq!(serde_json::from_str::<Stage>(&json).unwrap(), *stage);
        }
        assert_eq!(Phase::from_name("read-task"), Some(Phase::ReadTask));
        assert_eq!(Phase::from_name("ReadTask"), None);
        assert_eq!(Role::sql_list(), "'agent', 'router', 'verifier', 'hook'");
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        let back: AttemptOutcome = conn
            .query_row("SELECT ?1", [AttemptOutcome::NeedsHuman], |r| r.get(0))
            .unwrap();
        assert_eq!(back, AttemptOutcome::NeedsHuman);
        let unknown = conn.query_row("SELECT 'parked'", [], |r| r.get::<_, AttemptOutcome>(0));
        assert!(unknown.is_err());
    }
}
