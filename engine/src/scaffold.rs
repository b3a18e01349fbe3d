//! `trellis new`: the files of a minimal app that checks clean.

const APP: &str = "name: {name}
label: {en: {title}, zh: {title}}
version: 0.1.0
menu:
  - entity: note
";

const NOTE: &str = "label: {en: Note, zh: 笔记}
title: title
fields:
  title: {type: text, label: {en: Title, zh: 标题}, required: true, max_length: 200}
  body: {type: long_text, label: {en: Text, zh: 正文}}
  owner: {type: user, label: {en: Owner, zh: 负责人}, default: $user.id}
search: [title]
views:
  mine:
    label: {en: My notes, zh: 我的笔记}
    columns: [title, owner, created_at]
    sort: [-created_at]
    filter: {owner: $user.id}
";

const ROLES: &str = "roles:
  member:
    label: {en: Member, zh: 成员}
    permissions:
      note:
        allow: [create, read, update, delete]
        rows: {owner: $user.id}
";

/// The files of a new app named `name`, as (relative path, contents).
pub fn new_app(name: &str) -> Vec<(String, String)> {
    let app = APP
        .replace("{name}", name)
        .replace("{title}", &title_case(name));
    vec![
        ("app.yaml".into(), app),
        ("entities/note.yaml".into(), NOTE.to_owned()),
        ("roles.yaml".into(), ROLES.to_owned()),
    ]
}

fn title_case(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next()
                .map(|f| f.to_uppercase().chain(c).collect::<String>())
                .unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
