//! `trellis new`: the files of a minimal app that checks clean.

/// The files of a new app named `name`, as (relative path, contents).
pub fn new_app(name: &str) -> Vec<(String, String)> {
    vec![
        (
            "app.yaml".into(),
            format!(
                "name: {name}\nlabel: {{en: {title}, zh: {title}}}\nversion: 0.1.0\nmenu:\n  - entity: note\n",
                title = title_case(name)
            ),
        ),
        (
            "entities/note.yaml".into(),
            format!(
                "label: {{en: Note, zh: 笔记}}\ntitle: title\nfields:\n  title: {{type: text, label: {{en: Title, zh: 标题}}, required: true, max_length: 200}}\n  body: {{type: long_text, label: {{en: Text, zh: 正文}}}}\n  owner: {{type: user, label: {{en: Owner, zh: 负责人}}, default: $user.id}}\nsearch: [title]\nviews:\n  mine:\n    label: {{en: My notes, zh: 我的笔记}}\n    columns: [title, owner, created_at]\n    sort: [-created_at]\n    filter: {{owner: $user.id}}\n",
            ),
        ),
        (
            "roles.yaml".into(),
            format!(
                "roles:\n  member:\n    label: {{en: Member, zh: 成员}}\n    permissions:\n      note:\n        allow: [create, read, update, delete]\n        rows: {{owner: $user.id}}\n",
            ),
        ),
    ]
}

fn title_case(name: &str) -> String {
    name.split('_')
        .map(|w| {
            let mut c = w.chars();
            c.next().map(|f| f.to_uppercase().chain(c).collect::<String>()).unwrap_or_default()
        })
        .collect::<Vec<_>>()
        .join(" ")
}
