//! Checks of alerts and scheduled jobs.

use super::{Ctx, JOB_VARIABLES};
use crate::load::Item;
use crate::model::{Alert, Job};

pub(super) fn check_alert(ctx: &mut Ctx, item: &Item<Alert>) {
    let file = &*item.file;
    let a = &item.value;
    ctx.schedule(file, "/schedule", &a.schedule);
    if let Some(repeat) = &a.repeat_after {
        ctx.duration(file, "/repeat_after", repeat);
    }
    let Some(entity) = ctx.entity(file, "/entity", &a.entity) else {
        return;
    };
    ctx.filter(file, "/filter", &a.filter, &entity.fields);
    ctx.recipients(
        file,
        "/recipients",
        &a.recipients,
        &entity.fields,
        &entity.name,
    );
}

pub(super) fn check_job(ctx: &mut Ctx, item: &Item<Job>) {
    let file = &*item.file;
    let j = &item.value;
    ctx.schedule(file, "/schedule", &j.schedule);
    ctx.rule_source(file, "", j.script.as_ref(), j.file.as_ref(), &JOB_VARIABLES);
}
