//! Who may take an action on a record now, and whether the approvals given
//! so far complete it.
//!
//! A user may act through a role of the action, through a user field of the
//! record naming them, as the deputy of someone who may (a delegation for a
//! period), because an approver transferred their turn to them, or because an
//! approver added them to sign first (add-sign). While an added signer has not
//! signed, the others wait.

use std::collections::{BTreeSet, HashSet};

use sea_orm::ConnectionTrait;
use sea_orm::sea_query::{Alias, Expr, ExprTrait, Query};
use serde_json::{Map, Value as Json};
use trellis_engine::model::Approval;

use super::ActionModel;
use super::history::{Entry, Kind};
use crate::deploy::DELEGATIONS;
use crate::permission::User;
use crate::record::RecordError;

/// A user as an approver: their roles, the people they stand in for today,
/// and whether they may edit records of the entity at all.
#[derive(Debug, Clone)]
pub struct Me {
    pub user: User,
    /// (user id, roles) of everyone whose tasks this user handles as deputy today.
    pub deputising: Vec<(i64, Vec<String>)>,
    /// For actions naming neither roles nor users: anyone who may update the record.
    pub can_update: bool,
}

/// How a user may take an action.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Via {
    /// As an approver (`role hr`, `field approver`, `deputy of #7 (role hr)`…).
    Approver(String),
    /// As a signer added by an approver: their sign-off lets the others continue.
    AddedSigner(i64),
}

impl Via {
    pub fn text(&self) -> String {
        match self {
            Via::Approver(why) => why.clone(),
            Via::AddedSigner(by) => format!("added by #{by}"),
        }
    }
}

/// The users a record's user field names (one, or several for `multiple`).
fn users_in(record: &Map<String, Json>, field: &str) -> Vec<i64> {
    match record.get(field) {
        Some(Json::Number(n)) => n.as_i64().into_iter().collect(),
        Some(Json::Array(items)) => items.iter().filter_map(Json::as_i64).collect(),
        _ => Vec::new(),
    }
}

/// Why `id` (holding `roles`) may take the action on its own, if it may.
fn own_reason(
    action: &ActionModel,
    record: &Map<String, Json>,
    id: i64,
    roles: &[String],
) -> Option<String> {
    let def = &action.def;
    if let Some(field) = def.users.iter().find(|f| users_in(record, f).contains(&id)) {
        return Some(format!("field {field}"));
    }
    def.roles
        .iter()
        .find(|r| roles.contains(r))
        .map(|role| format!("role {role}"))
}

/// Added signers who have not signed yet, in the order they were added.
pub fn pending_signers(round: &[Entry]) -> Vec<(i64, i64)> {
    let mut pending: Vec<(i64, i64)> = Vec::new();
    for e in round {
        match (e.kind, e.target_user, e.user_id) {
            (Kind::AddSign, Some(target), Some(by)) => pending.push((target, by)),
            (Kind::Signoff, _, Some(signer)) => pending.retain(|(t, _)| *t != signer),
            _ => {}
        }
    }
    pending
}

/// Users whose turn was transferred away in this round, and to whom.
fn transfers(round: &[Entry]) -> Vec<(i64, i64)> {
    round
        .iter()
        .filter(|e| e.kind == Kind::Transfer)
        .filter_map(|e| Some((e.user_id?, e.target_user?)))
        .collect()
}

/// Why `me` may take `action` on the record now, or why not.
pub fn eligible(
    action: &ActionModel,
    record: &Map<String, Json>,
    round: &[Entry],
    me: &Me,
) -> Result<Via, String> {
    let id = me.user.id;
    // Transfers and added signers concern the approval of the state, so they
    // count for transitions only, not for buttons that keep the state.
    let (pending, moved) = if action.def.to.is_some() {
        (pending_signers(round), transfers(round))
    } else {
        (Vec::new(), Vec::new())
    };
    if let Some((_, by)) = pending.iter().find(|(t, _)| *t == id) {
        return Ok(Via::AddedSigner(*by));
    }
    let approved = round.iter().any(|e| {
        e.kind == Kind::Approval
            && e.user_id == Some(id)
            && e.action.as_deref() == Some(&action.def.action)
    });
    if approved {
        return Err("you have approved this already; the others have not finished".into());
    }
    let gave_away = |user: i64| moved.iter().any(|(from, _)| *from == user);
    let reason = if let Some((from, _)) = moved.iter().rev().find(|(_, to)| *to == id) {
        Some(format!("transferred by #{from}"))
    } else if gave_away(id) {
        None
    } else if let Some(why) = own_reason(action, record, id, &me.user.roles) {
        Some(why)
    } else if let Some((principal, why)) = me.deputising.iter().find_map(|(p, roles)| {
        (!gave_away(*p))
            .then(|| own_reason(action, record, *p, roles))
            .flatten()
            .map(|why| (*p, why))
    }) {
        Some(format!("deputy of #{principal} ({why})"))
    } else if action.def.roles.is_empty() && action.def.users.is_empty() && me.can_update {
        Some("update permission".into())
    } else if me.user.is_admin() {
        Some("role admin".into())
    } else {
        None
    };
    let Some(reason) = reason else {
        return Err(format!(
            "you may not take `{}` on this record",
            action.def.action
        ));
    };
    if let Some((signer, _)) = pending.first() {
        return Err(format!("waiting for #{signer} to sign first"));
    }
    Ok(Via::Approver(reason))
}

/// Whether the approvals of this round, with the one being given now (by
/// `me`, through `via`), complete the action. `members` are the users of the
/// action's roles, for countersigning.
pub fn completes(
    action: &ActionModel,
    record: &Map<String, Json>,
    round: &[Entry],
    me: i64,
    via: &str,
    members: &[i64],
) -> bool {
    let given: Vec<(i64, &str)> = round
        .iter()
        .filter(|e| e.kind == Kind::Approval && e.action.as_deref() == Some(&action.def.action))
        .filter_map(|e| Some((e.user_id?, e.via.as_deref().unwrap_or_default())))
        .chain([(me, via)])
        .collect();
    let approvers: BTreeSet<i64> = given.iter().map(|(u, _)| *u).collect();
    match action.def.approval {
        None | Some(Approval::Any) => true,
        Some(Approval::Quorum(n)) => approvers.len() >= n as usize,
        Some(Approval::EachRole) => action.def.roles.iter().all(|role| {
            let tag = format!("role {role}");
            given.iter().any(|(_, why)| why.contains(&tag))
        }),
        Some(Approval::All) => {
            // Everyone the action names must approve; a transferred turn is
            // owed by whoever received it, a deputy's approval counts for the principal.
            let moved = transfers(round);
            let mut owed: HashSet<i64> = members.iter().copied().collect();
            for field in &action.def.users {
                owed.extend(users_in(record, field));
            }
            for (from, to) in moved {
                if owed.remove(&from) {
                    owed.insert(to);
                }
            }
            let covered = |user: i64| {
                approvers.contains(&user)
                    || given
                        .iter()
                        .any(|(_, why)| why.starts_with(&format!("deputy of #{user} ")))
            };
            owed.into_iter().all(covered)
        }
    }
}

/// The (active) members of some roles.
pub async fn members<C: ConnectionTrait>(
    conn: &C,
    roles: &[String],
) -> Result<Vec<i64>, RecordError> {
    if roles.is_empty() {
        return Ok(Vec::new());
    }
    let mut q = Query::select();
    q.distinct()
        .column((Alias::new("r"), Alias::new("user_id")))
        .from_as(Alias::new("trellis_user_roles"), Alias::new("r"))
        .inner_join(
            Alias::new("trellis_users"),
            Expr::col((Alias::new("trellis_users"), Alias::new("id")))
                .equals((Alias::new("r"), Alias::new("user_id"))),
        )
        .and_where(Expr::col((Alias::new("r"), Alias::new("role"))).is_in(roles.iter().cloned()))
        .and_where(Expr::col((Alias::new("trellis_users"), Alias::new("disabled"))).eq(false));
    let mut out = Vec::new();
    for row in conn.query_all(&q).await? {
        out.push(row.try_get_by_index::<i64>(0)?);
    }
    Ok(out)
}

/// Everyone `deputy` stands in for on `today`, with their roles.
pub async fn deputising<C: ConnectionTrait>(
    conn: &C,
    deputy: i64,
    today: chrono::NaiveDate,
) -> Result<Vec<(i64, Vec<String>)>, RecordError> {
    let day = today.format("%Y-%m-%d").to_string();
    let mut q = Query::select();
    q.column((Alias::new("d"), Alias::new("user_id")))
        .column((Alias::new("trellis_user_roles"), Alias::new("role")))
        .from_as(Alias::new(DELEGATIONS), Alias::new("d"))
        .left_join(
            Alias::new("trellis_user_roles"),
            Expr::col((Alias::new("trellis_user_roles"), Alias::new("user_id")))
                .equals((Alias::new("d"), Alias::new("user_id"))),
        )
        .and_where(Expr::col((Alias::new("d"), Alias::new("deputy_id"))).eq(deputy))
        .and_where(Expr::col((Alias::new("d"), Alias::new("starts_on"))).lte(day.clone()))
        .and_where(Expr::col((Alias::new("d"), Alias::new("ends_on"))).gte(day));
    let mut out: Vec<(i64, Vec<String>)> = Vec::new();
    for row in conn.query_all(&q).await? {
        let principal: i64 = row.try_get_by_index(0)?;
        let role: Option<String> = row.try_get_by_index(1)?;
        match out.iter_mut().find(|(p, _)| *p == principal) {
            Some((_, roles)) => roles.extend(role),
            None => out.push((principal, role.into_iter().collect())),
        }
    }
    Ok(out)
}
