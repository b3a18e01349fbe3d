//! Reads on SQLite and PostgreSQL: by id, lists (filters, sort, search, paging,
//! capped totals), aggregates; the caller's row filter in every one of them.

mod common;

use std::sync::Arc;

use common::{count, each_backend, model};
use serde_json::{Map, Value as Json, json};
use trellis_engine::model::{Filter, Operation};
use trellis_runtime::permission::{Permissions, User};
use trellis_runtime::read::aggregate::{Grouping, Measure};
use trellis_runtime::{
    Access, Actor, Catalog, ListQuery, Paging, RecordError, RecordReader, RecordWriter, Store,
    Total, deploy_model,
};

const APP: &str = "name: crm\nlabel: CRM\n";

const ACCOUNT: &str = r#"
label: Account
title: name
fields:
  name: {type: text, required: true}
  region: {type: select, options: [east, west, north]}
"#;

const DEAL: &str = r#"
label: Deal
title: title
fields:
  title: {type: text, required: true}
  account: {type: link, target: account}
  stage: {type: select, options: [lead, won, lost]}
  amount: {type: money}
  seats: {type: integer}
  owner: {type: user}
  close_on: {type: date}
  tags: {type: multi_select, options: [vip, new]}
search: [title]
"#;

/// Roles whose rows and fields of the linked account differ; `region` is a
/// `$user` attribute an account may lack.
const ROLES: &str = r#"
user_attributes:
  region: {type: text, label: Region}
roles:
  regional:
    label: Regional
    permissions:
      account: {allow: [read], rows: {region: $user.region}}
      deal: {allow: [read], rows: {account.region: $user.region}}
  rep:
    label: Sales rep
    permissions:
      account: {allow: [read], rows: {region: $user.region}}
      deal: {allow: [create, read, update], rows: {owner: $user.id}}
  blind:
    label: Sees no accounts
    permissions:
      deal: {allow: [create, read, update], rows: {owner: $user.id}}
  masked:
    label: Sees accounts without their names
    permissions:
      account: {allow: [read], fields: {name: hidden}}
      deal: {allow: [create, read, update], rows: {owner: $user.id}}
"#;

struct Fixture {
    writer: RecordWriter,
    reader: RecordReader,
    catalog: Arc<Catalog>,
    permissions: Permissions,
}

async fn fixture(store: &Store) -> Fixture {
    let m = model(&[
        ("app.yaml", APP),
        ("entities/account.yaml", ACCOUNT),
        ("entities/deal.yaml", DEAL),
        ("roles.yaml", ROLES),
    ]);
    deploy_model(store, &m, false).await.expect("deploys");
    let catalog = Arc::new(Catalog::new(&m));
    Fixture {
        writer: RecordWriter::new(store.clone(), catalog.clone()),
        reader: RecordReader::new(store.clone(), catalog.clone()),
        catalog,
        permissions: Permissions::new(&m),
    }
}

/// User `id` with one role and, if given, a `region` attribute.
fn user(id: i64, role: &str, region: Option<&str>) -> User {
    let mut actor = Actor::user(id);
    if let Some(region) = region {
        actor.attributes.insert("region".into(), json!(region));
    }
    User {
        id,
        username: format!("user{id}"),
        roles: vec![role.into()],
        actor,
    }
}

fn ids(page: &trellis_runtime::Page) -> Vec<i64> {
    page.records.iter().map(|r| r.id).collect()
}

fn map(v: Json) -> Map<String, Json> {
    v.as_object().cloned().expect("an object")
}

fn filter(v: Json) -> Filter {
    Filter(map(v))
}

/// Twelve deals of two owners over three stages, with money that sums exactly.
async fn seed(f: &Fixture) -> i64 {
    let account = f.catalog.entity("crm", "account").expect("account");
    let acme = f
        .writer
        .create(
            &account,
            map(json!({"name": "Acme", "region": "east"})),
            &Actor::user(1),
            &Access::everything(),
        )
        .await
        .expect("acme")
        .id;
    let deal = f.catalog.entity("crm", "deal").expect("deal");
    let deals: Vec<_> = (1..=12)
        .map(|i| {
            let stage = ["lead", "won", "lost"][i % 3];
            map(json!({
                "title": format!("Deal {i:02}"),
                "account": if i % 2 == 0 { json!(acme) } else { Json::Null },
                "stage": stage,
                "amount": format!("{}.10", i * 1000),
                "seats": i,
                "owner": if i <= 6 { 1 } else { 2 },
                "close_on": format!("2026-{:02}-15", (i - 1) / 3 + 1),
                "tags": if i % 4 == 0 { json!(["vip"]) } else { json!([]) },
            }))
        })
        .collect();
    f.writer
        .create_many(&deal, deals, &Actor::user(1), &Access::everything())
        .await
        .expect("deals");
    acme
}

fn titles(page: &trellis_runtime::Page) -> Vec<String> {
    page.records
        .iter()
        .map(|r| r.values["title"].as_str().unwrap_or_default().to_owned())
        .collect()
}

#[tokio::test]
async fn lists_filter_sort_search_and_page() {
    each_backend("lists", async |store| {
        let f = fixture(&store).await;
        seed(&f).await;
        let deal = f.catalog.entity("crm", "deal").expect("deal");
        let all = Access::everything();
        let list = |q: ListQuery| {
            let (reader, deal, all) = (&f.reader, deal.clone(), all.clone());
            async move { reader.list(&deal, &q, &all).await.expect("lists") }
        };
        let page = list(ListQuery { filter: Some(filter(json!({"stage": {"in": ["won", "lost"]}, "seats": {"gte": 5}}))), sort: vec!["-amount".into()], ..Default::default() }).await;
        assert_eq!(titles(&page), ["Deal 11", "Deal 10", "Deal 08", "Deal 07", "Deal 05"]);
        assert_eq!(page.total, Total::Exact(5));
        let page = list(ListQuery { filter: Some(filter(json!({"or": [{"tags": "vip"}, {"close_on": {"between": ["2026-01-01", "2026-01-31"]}}], "not": {"seats": 2}}))), sort: vec!["seats".into()], ..Default::default() }).await;
        assert_eq!(titles(&page), ["Deal 01", "Deal 03", "Deal 04", "Deal 08", "Deal 12"]);
        let page = list(ListQuery { filter: Some(filter(json!({"account": {"is_null": false}, "amount": {"lt": "4000.10"}}))), ..Default::default() }).await;
        assert_eq!(titles(&page), ["Deal 02"]);
        let page = list(ListQuery { search: Some("deal 1".into()), sort: vec!["title".into()], ..Default::default() }).await;
        assert_eq!(titles(&page), ["Deal 10", "Deal 11", "Deal 12"]);
        let page = list(ListQuery { sort: vec!["title".into()], limit: Some(5), paging: Paging::Offset(10), ..Default::default() }).await;
        assert_eq!(titles(&page), ["Deal 11", "Deal 12"]);
        // Link titles come with the page.
        let page = list(ListQuery { filter: Some(filter(json!({"seats": 2}))), ..Default::default() }).await;
        assert_eq!(page.records[0].titles["account"], json!("Acme"));
    })
    .await;
}

#[tokio::test]
async fn totals_are_exact_up_to_the_cap_unless_asked() {
    each_backend("capped_total", async |store| {
        let f = fixture(&store).await;
        seed(&f).await;
        let deal = f.catalog.entity("crm", "deal").expect("deal");
        let reader = f.reader.clone().with_total_cap(5);
        let page = reader
            .list(
                &deal,
                &ListQuery {
                    limit: Some(2),
                    ..Default::default()
                },
                &Access::everything(),
            )
            .await
            .expect("lists");
        assert_eq!(page.total, Total::AtLeast(5));
        assert_eq!(serde_json::to_value(page.total).expect("json"), json!("5+"));
        let exact = reader
            .list(
                &deal,
                &ListQuery {
                    limit: Some(2),
                    exact_total: true,
                    ..Default::default()
                },
                &Access::everything(),
            )
            .await
            .expect("lists");
        assert_eq!(exact.total, Total::Exact(12));
    })
    .await;
}

#[tokio::test]
async fn keyset_paging_returns_every_row_once_while_rows_are_inserted() {
    each_backend("keyset", async |store| {
        let f = fixture(&store).await;
        seed(&f).await;
        let deal = f.catalog.entity("crm", "deal").expect("deal");
        let seeded = ids(&f.reader.list(&deal, &ListQuery { limit: Some(500), ..Default::default() }, &Access::everything()).await.expect("seeded rows"));
        assert_eq!(seeded.len(), 12, "the twelve seeded deals");
        let mut seen = Vec::new();
        let mut paging = Paging::First;
        let mut inserted = 0;
        loop {
            // Sorted by a nullable field, descending, so NULLs and ties are crossed.
            let q = ListQuery { sort: vec!["-account".into(), "seats".into()], limit: Some(4), paging: paging.clone(), ..Default::default() };
            let page = f.reader.list(&deal, &q, &Access::everything()).await.expect("page");
            seen.extend(page.records.iter().map(|r| r.id));
            if inserted < 2 {
                // One new row sorts before the cursor (not to be seen), one after it (to be seen).
                f.writer.create(&deal, map(json!({"title": format!("Late {inserted}"), "seats": 100})), &Actor::user(1), &Access::everything()).await.expect("late row");
                f.writer.create(&deal, map(json!({"title": format!("Early {inserted}"), "seats": 0, "account": null})), &Actor::user(1), &Access::everything()).await.expect("row");
                inserted += 1;
            }
            match page.next {
                Some(cursor) => paging = Paging::After(cursor),
                None => break,
            }
        }
        let times = |id: i64| seen.iter().filter(|s| **s == id).count();
        assert!(seeded.iter().all(|id| times(*id) == 1), "every seeded row exactly once: {seen:?} of {seeded:?}");
        // "Late" rows sort after every cursor, so each is seen, once.
        let late = f.reader.list(&deal, &ListQuery { filter: Some(filter(json!({"seats": 100}))), ..Default::default() }, &Access::everything()).await.expect("late rows");
        assert_eq!(late.records.len(), 2);
        assert!(ids(&late).iter().all(|id| times(*id) == 1), "every late row exactly once: {seen:?}");
        assert!(seen.iter().all(|id| times(*id) == 1), "no row twice: {seen:?}");
        let err = f.reader.list(&deal, &ListQuery { paging: Paging::After("bm9wZQ".into()), ..Default::default() }, &Access::everything()).await.expect_err("bad cursor");
        assert!(matches!(err, RecordError::BadQuery(_)));
    })
    .await;
}

#[tokio::test]
async fn hostile_filters_and_sorts_are_errors_or_plain_values() {
    each_backend("hostile", async |store| {
        let f = fixture(&store).await;
        seed(&f).await;
        let deal = f.catalog.entity("crm", "deal").expect("deal");
        let all = Access::everything();
        for bad in [
            json!({"title; DROP TABLE crm__deal; --": 1}),
            json!({"seats": {"gt": "1 OR 1=1"}}),
            json!({"stage": {"like": "%"}}),
        ] {
            let q = ListQuery {
                filter: Some(filter(bad.clone())),
                ..Default::default()
            };
            let err = f.reader.list(&deal, &q, &all).await.expect_err("refused");
            assert!(matches!(err, RecordError::BadQuery(_)), "{bad}: {err}");
        }
        for sort in ["seats; DROP TABLE crm__deal", "nope", "tags"] {
            let q = ListQuery {
                sort: vec![sort.into()],
                ..Default::default()
            };
            assert!(
                matches!(
                    f.reader.list(&deal, &q, &all).await,
                    Err(RecordError::BadQuery(_))
                ),
                "{sort}"
            );
        }
        let q = ListQuery {
            filter: Some(filter(json!({"title": "x' OR '1'='1"}))),
            search: Some("%' OR 1=1 --".into()),
            ..Default::default()
        };
        let page = f
            .reader
            .list(&deal, &q, &all)
            .await
            .expect("values are only values");
        assert!(page.records.is_empty());
        assert_eq!(count(&store, "SELECT COUNT(*) FROM crm__deal").await, 12);
    })
    .await;
}

#[tokio::test]
async fn row_filters_bind_every_read() {
    each_backend("row_filters", async |store| {
        let f = fixture(&store).await;
        seed(&f).await;
        let deal = f.catalog.entity("crm", "deal").expect("deal");
        let mine = Access::rows(filter(json!({"owner": "$user.id"})), &Actor::user(2));
        let page = f
            .reader
            .list(&deal, &ListQuery::default(), &mine)
            .await
            .expect("lists");
        assert_eq!(page.total, Total::Exact(6));
        assert!(page.records.iter().all(|r| r.values["owner"] == json!(2)));
        let someone_elses = f
            .reader
            .list(
                &deal,
                &ListQuery {
                    filter: Some(filter(json!({"owner": 1}))),
                    ..Default::default()
                },
                &Access::everything(),
            )
            .await
            .expect("lists")
            .records[0]
            .id;
        let err = f
            .reader
            .get(&deal, someone_elses, &mine)
            .await
            .expect_err("hidden");
        assert!(
            matches!(err, RecordError::NotFound { .. }),
            "outside the rows is not found, never forbidden"
        );
        let groups = f
            .reader
            .aggregate(
                &deal,
                &[Measure::Count, Measure::Sum("amount".into())],
                &[],
                None,
                &mine,
            )
            .await
            .expect("aggregates");
        assert_eq!(groups[0].values, [json!(6), json!("57000.60")]);
    })
    .await;
}

#[tokio::test]
async fn an_unset_user_attribute_matches_no_rows() {
    each_backend("unset_attribute", async |store| {
        let f = fixture(&store).await;
        let acme = seed(&f).await;
        let (account, deal) = (
            f.catalog.entity("crm", "account").expect("account"),
            f.catalog.entity("crm", "deal").expect("deal"),
        );
        let all = Access::everything();
        let mut blank = Vec::new();
        for name in ["Blank", "Empty"] {
            let made = f
                .writer
                .create(&account, map(json!({"name": name})), &Actor::user(1), &all)
                .await
                .expect("an account without a region");
            blank.push(made.id);
        }
        f.writer
            .create(
                &deal,
                map(json!({"title": "Regionless", "account": blank[0]})),
                &Actor::user(1),
                &all,
            )
            .await
            .expect("a deal of a regionless account");
        let read = |user: &User, entity| {
            f.permissions
                .access(user, entity, Operation::Read)
                .expect("may read")
        };

        // Without the attribute, `{region: $user.region}` is not `region IS NULL`.
        let nobody = user(3, "regional", None);
        let access = read(&nobody, &account);
        let page = f
            .reader
            .list(&account, &ListQuery::default(), &access)
            .await
            .expect("lists");
        assert_eq!(page.total, Total::Exact(0), "{:?}", ids(&page));
        for id in [acme, blank[0]] {
            let err = f.reader.get(&account, id, &access).await.expect_err("none");
            assert!(matches!(err, RecordError::NotFound { .. }), "{err}");
        }
        let groups = f
            .reader
            .aggregate(&account, &[Measure::Count], &[], None, &access)
            .await
            .expect("aggregates");
        assert_eq!(groups[0].values, [json!(0)]);
        let deals = read(&nobody, &deal);
        let page = f
            .reader
            .list(&deal, &ListQuery::default(), &deals)
            .await
            .expect("lists");
        assert_eq!(page.total, Total::Exact(0), "through a link too");

        // With it, exactly their records.
        let easterner = user(4, "regional", Some("east"));
        let access = read(&easterner, &account);
        let page = f
            .reader
            .list(&account, &ListQuery::default(), &access)
            .await
            .expect("lists");
        assert_eq!(ids(&page), [acme]);
        f.reader.get(&account, acme, &access).await.expect("theirs");
        let groups = f
            .reader
            .aggregate(&account, &[Measure::Count], &[], None, &access)
            .await
            .expect("aggregates");
        assert_eq!(groups[0].values, [json!(1)]);
        let page = f
            .reader
            .list(&deal, &ListQuery::default(), &read(&easterner, &deal))
            .await
            .expect("lists");
        assert_eq!(page.total, Total::Exact(6), "the deals of Acme");

        // Every comparison with the unset attribute matches nothing, `not` around it included;
        // a literal null keeps its meaning.
        let mine = Access::everything().for_user(&nobody.actor);
        for (request, expected) in [
            (json!({"region": {"ne": "$user.region"}}), 0),
            (json!({"region": {"in": ["$user.region", "east"]}}), 0),
            (json!({"region": {"not_in": ["$user.region"]}}), 0),
            (json!({"name": {"gte": "$user.region"}}), 0),
            (json!({"name": {"starts_with": "$user.region"}}), 0),
            (json!({"not": {"region": "$user.region"}}), 0),
            (
                json!({"or": [{"region": "$user.region"}, {"name": "Acme"}]}),
                1,
            ),
            (json!({"region": null}), 2),
            (json!({"region": {"is_null": true}}), 2),
            (json!({"not": {"region": null}}), 1),
        ] {
            let q = ListQuery {
                filter: Some(filter(request.clone())),
                ..Default::default()
            };
            let page = f.reader.list(&account, &q, &mine).await.expect("lists");
            assert_eq!(page.total, Total::Exact(expected), "{request}");
        }
    })
    .await;
}

#[tokio::test]
async fn links_show_and_reach_only_the_callers_rows_of_the_target() {
    each_backend("link_rows", async |store| {
        let f = fixture(&store).await;
        let acme = seed(&f).await;
        let (account, deal) = (
            f.catalog.entity("crm", "account").expect("account"),
            f.catalog.entity("crm", "deal").expect("deal"),
        );
        let all = Access::everything();
        let bolt = f
            .writer
            .create(
                &account,
                map(json!({"name": "Bolt", "region": "west"})),
                &Actor::user(1),
                &all,
            )
            .await
            .expect("bolt")
            .id;
        let mut made = Vec::new();
        for (title, linked) in [("With Acme", acme), ("With Bolt", bolt)] {
            let input = map(json!({"title": title, "account": linked, "owner": 5}));
            let record = f
                .writer
                .create(&deal, input, &Actor::user(1), &all)
                .await
                .expect("a deal of user 5");
            made.push(record);
        }
        let (with_acme, with_bolt) = (made[0].id, made[1].id);
        let titles_of = async |who: &User| {
            let access = f
                .permissions
                .access(who, &deal, Operation::Read)
                .expect("may read deals");
            let page = f
                .reader
                .list(&deal, &ListQuery::default(), &access)
                .await
                .expect("lists");
            assert_eq!(ids(&page), [with_acme, with_bolt], "their own deals");
            let mut seen = Vec::new();
            for record in page.records {
                let got = f.reader.get(&deal, record.id, &access).await.expect("gets");
                assert_eq!(got.titles, record.titles, "get and list agree");
                assert_eq!(got.values["account"], record.values["account"]);
                seen.push(record.titles.get("account").cloned());
            }
            seen
        };

        // An eastern rep sees Acme's title, not Bolt's, though the link's id stays.
        let rep = user(5, "rep", Some("east"));
        assert_eq!(titles_of(&rep).await, [Some(json!("Acme")), None]);
        // A role that may not read accounts, or not their names, sees no titles.
        assert_eq!(titles_of(&user(5, "blind", None)).await, [None, None]);
        assert_eq!(titles_of(&user(5, "masked", None)).await, [None, None]);
        // The platform sees them all.
        let page = f
            .reader
            .list(
                &deal,
                &ListQuery {
                    filter: Some(filter(json!({"owner": 5}))),
                    ..Default::default()
                },
                &all,
            )
            .await
            .expect("lists");
        assert_eq!(page.records[1].titles["account"], json!("Bolt"));

        // Linking to a record outside the caller's rows is refused as a missing one.
        let writes = f
            .permissions
            .access(&rep, &deal, Operation::Create)
            .expect("may create deals");
        let refusal = async |account_id: i64| {
            let input = map(json!({"title": "New", "account": account_id, "owner": 5}));
            match f.writer.create(&deal, input, &rep.actor, &writes).await {
                Err(RecordError::Invalid(errors)) => errors,
                other => panic!("account #{account_id}: {other:?}"),
            }
        };
        let hidden = refusal(bolt).await;
        let missing = refusal(999_999).await;
        assert_eq!(
            (hidden[0].field.as_str(), hidden[0].code.as_str()),
            ("account", "link")
        );
        assert_eq!(
            hidden[0].message,
            missing[0].message.replace("999999", &bolt.to_string())
        );
        let blind = user(5, "blind", None);
        let blind_writes = f
            .permissions
            .access(&blind, &deal, Operation::Create)
            .expect("may create deals");
        let input = map(json!({"title": "New", "account": acme, "owner": 5}));
        assert!(
            matches!(
                f.writer
                    .create(&deal, input, &blind.actor, &blind_writes)
                    .await,
                Err(RecordError::Invalid(_))
            ),
            "no account exists for a role that may not read accounts"
        );
        let input = map(json!({"title": "New", "account": acme, "owner": 5}));
        f.writer
            .create(&deal, input, &rep.actor, &writes)
            .await
            .expect("Acme is inside the rep's rows");

        // An update keeps a link it cannot see, but may not set one.
        let updates = f
            .permissions
            .access(&rep, &deal, Operation::Update)
            .expect("may update deals");
        let kept = f
            .writer
            .update(
                &deal,
                with_bolt,
                1,
                map(json!({"title": "Renamed"})),
                &rep.actor,
                &updates,
            )
            .await
            .expect("the link it had stays");
        assert_eq!(kept.values["account"], json!(bolt));
        let err = f
            .writer
            .update(
                &deal,
                with_acme,
                1,
                map(json!({"account": bolt})),
                &rep.actor,
                &updates,
            )
            .await
            .expect_err("a new link outside the rows");
        assert!(matches!(err, RecordError::Invalid(_)), "{err}");
        let unchanged = f.reader.get(&deal, with_acme, &all).await.expect("gets");
        assert_eq!(unchanged.values["account"], json!(acme));
    })
    .await;
}

#[tokio::test]
async fn row_filters_bind_updates_and_deletes_and_keep_writes_inside() {
    each_backend("row_writes", async |store| {
        let f = fixture(&store).await;
        seed(&f).await;
        let deal = f.catalog.entity("crm", "deal").expect("deal");
        let actor = Actor::user(2);
        let mine = Access::rows(filter(json!({"owner": "$user.id"})), &actor);
        let all = Access::everything();
        let first = |owner: i64| {
            let (reader, deal) = (&f.reader, deal.clone());
            async move {
                let q = ListQuery {
                    filter: Some(filter(json!({"owner": owner}))),
                    ..Default::default()
                };
                reader
                    .list(&deal, &q, &Access::everything())
                    .await
                    .expect("lists")
                    .records[0]
                    .clone()
            }
        };
        let theirs = first(1).await;
        let patch = map(json!({"title": "taken"}));
        let err = f
            .writer
            .update(&deal, theirs.id, theirs.version, patch, &actor, &mine)
            .await
            .expect_err("outside the rows");
        assert!(matches!(err, RecordError::NotFound { .. }), "{err}");
        let err = f
            .writer
            .delete(&deal, theirs.id, &actor, &mine)
            .await
            .expect_err("outside the rows");
        assert!(matches!(err, RecordError::NotFound { .. }), "{err}");
        let untouched = f
            .reader
            .get(&deal, theirs.id, &all)
            .await
            .expect("still there");
        assert_eq!(untouched.values["title"], theirs.values["title"]);

        // A write may not move a record out of the caller's rows, nor create one outside them.
        let own = first(2).await;
        let err = f
            .writer
            .update(
                &deal,
                own.id,
                own.version,
                map(json!({"owner": 1})),
                &actor,
                &mine,
            )
            .await
            .expect_err("gives it away");
        assert!(matches!(err, RecordError::OutsideRows { .. }), "{err}");
        let err = f
            .writer
            .create(
                &deal,
                map(json!({"title": "For Ann", "owner": 1})),
                &actor,
                &mine,
            )
            .await
            .expect_err("someone else's");
        assert!(matches!(err, RecordError::OutsideRows { .. }), "{err}");
        f.writer
            .create(
                &deal,
                map(json!({"title": "Mine", "owner": 2})),
                &actor,
                &mine,
            )
            .await
            .expect("inside the rows");
        f.writer
            .delete(&deal, own.id, &actor, &mine)
            .await
            .expect("own record");
        assert_eq!(
            count(&store, "SELECT COUNT(*) FROM crm__deal WHERE owner = 1").await,
            6
        );
    })
    .await;
}

#[tokio::test]
async fn hidden_fields_are_unknown_to_the_caller_and_read_only_ones_refuse_writes() {
    each_backend("hidden_fields", async |store| {
        let f = fixture(&store).await;
        seed(&f).await;
        let deal = f.catalog.entity("crm", "deal").expect("deal");
        let actor = Actor::user(2);
        let limited = Access::everything()
            .hiding(["amount".to_owned()])
            .with_read_only(["stage".to_owned()]);
        let page = f
            .reader
            .list(&deal, &ListQuery::default(), &limited)
            .await
            .expect("lists");
        assert!(
            page.records
                .iter()
                .all(|r| !r.values.contains_key("amount"))
        );
        let one = f
            .reader
            .get(&deal, page.records[0].id, &limited)
            .await
            .expect("gets");
        assert!(!one.values.contains_key("amount"));
        assert!(one.values.contains_key("stage"));
        for q in [
            ListQuery {
                filter: Some(filter(json!({"amount": {"gt": 100}}))),
                ..Default::default()
            },
            ListQuery {
                sort: vec!["-amount".into()],
                ..Default::default()
            },
        ] {
            let err = f
                .reader
                .list(&deal, &q, &limited)
                .await
                .expect_err("unknown");
            assert!(matches!(err, RecordError::BadQuery(_)), "{err}");
            assert!(err.to_string().contains("amount"), "{err}");
        }
        let err = f
            .reader
            .aggregate(&deal, &[Measure::Sum("amount".into())], &[], None, &limited)
            .await
            .expect_err("unknown");
        assert!(matches!(err, RecordError::BadQuery(_)), "{err}");
        let err = f
            .writer
            .update(
                &deal,
                one.id,
                one.version,
                map(json!({"stage": "won", "amount": 1})),
                &actor,
                &limited,
            )
            .await
            .expect_err("refused");
        let codes: Vec<(&str, &str)> = err
            .field_errors()
            .iter()
            .map(|e| (e.field.as_str(), e.code.as_str()))
            .collect();
        assert_eq!(codes, [("stage", "read_only"), ("amount", "unknown_field")]);
    })
    .await;
}

#[tokio::test]
async fn aggregates_group_and_bucket_in_sql_with_exact_money() {
    each_backend("aggregates", async |store| {
        let f = fixture(&store).await;
        seed(&f).await;
        let deal = f.catalog.entity("crm", "deal").expect("deal");
        let all = Access::everything();
        let by_stage = f
            .reader
            .aggregate(
                &deal,
                &[
                    Measure::Count,
                    Measure::Sum("amount".into()),
                    Measure::Avg("seats".into()),
                    Measure::Max("close_on".into()),
                ],
                &[Grouping::parse("stage").expect("grouping")],
                None,
                &all,
            )
            .await
            .expect("aggregates");
        let rows: Vec<(Json, Vec<Json>)> = by_stage
            .into_iter()
            .map(|g| (g.keys[0].clone(), g.values))
            .collect();
        assert_eq!(
            rows,
            [
                (
                    json!("lead"),
                    vec![
                        json!(4),
                        json!("30000.40"),
                        json!("7.5"),
                        json!("2026-04-15")
                    ]
                ),
                (
                    json!("lost"),
                    vec![
                        json!(4),
                        json!("26000.40"),
                        json!("6.5"),
                        json!("2026-04-15")
                    ]
                ),
                (
                    json!("won"),
                    vec![
                        json!(4),
                        json!("22000.40"),
                        json!("5.5"),
                        json!("2026-04-15")
                    ]
                ),
            ]
        );
        let by_quarter = f
            .reader
            .aggregate(
                &deal,
                &[Measure::Sum("seats".into())],
                &[
                    Grouping::parse("close_on:quarter").expect("g"),
                    Grouping::parse("owner").expect("g"),
                ],
                None,
                &all,
            )
            .await
            .expect("aggregates");
        let keys: Vec<Vec<Json>> = by_quarter.iter().map(|g| g.keys.clone()).collect();
        // Months 1-3 are the first quarter (deals 1-9), month 4 the second (deals 10-12).
        assert_eq!(
            keys,
            [
                vec![json!("2026-Q1"), json!(1)],
                vec![json!("2026-Q1"), json!(2)],
                vec![json!("2026-Q2"), json!(2)]
            ]
        );
        assert_eq!(
            by_quarter
                .iter()
                .map(|g| g.values[0].clone())
                .collect::<Vec<_>>(),
            [json!(21), json!(24), json!(33)]
        );
        let by_month = f
            .reader
            .aggregate(
                &deal,
                &[Measure::Count],
                &[Grouping::parse("close_on:month").expect("g")],
                Some(&filter(json!({"stage": "won"}))),
                &all,
            )
            .await
            .expect("aggregates");
        assert_eq!(
            by_month
                .iter()
                .map(|g| g.keys[0].clone())
                .collect::<Vec<_>>(),
            [
                json!("2026-01"),
                json!("2026-02"),
                json!("2026-03"),
                json!("2026-04")
            ]
        );
        let by_week = f
            .reader
            .aggregate(
                &deal,
                &[Measure::Count],
                &[Grouping::parse("close_on:week").expect("g")],
                None,
                &all,
            )
            .await
            .expect("aggregates");
        assert_eq!(
            by_week[0].keys[0],
            json!("2026-01-12"),
            "weeks start on Monday"
        );
        // Money is exact: a thousand cents are ten, not 9.999999.
        let cents: Vec<_> = (0..1000)
            .map(|i| map(json!({"title": format!("c{i}"), "amount": "0.01", "stage": "lead"})))
            .collect();
        f.writer
            .create_many(&deal, cents, &Actor::system(), &Access::everything())
            .await
            .expect("cents");
        let sum = f
            .reader
            .aggregate(
                &deal,
                &[Measure::Sum("amount".into())],
                &[],
                Some(&filter(json!({"amount": "0.01"}))),
                &all,
            )
            .await
            .expect("sum");
        assert_eq!(sum[0].values[0], json!("10.00"));
        assert!(
            f.reader
                .aggregate(&deal, &[Measure::Sum("title".into())], &[], None, &all)
                .await
                .is_err()
        );
        // JSON has no order (nor, on PostgreSQL, do booleans): a bad query, not a failure.
        assert!(matches!(
            f.reader
                .aggregate(&deal, &[Measure::Max("tags".into())], &[], None, &all)
                .await,
            Err(RecordError::BadQuery(_))
        ));
        assert!(Measure::parse("median:amount").is_err());
    })
    .await;
}

#[tokio::test]
async fn get_returns_lines_and_link_titles() {
    each_backend("get", async |store| {
        let f = fixture(&store).await;
        let acme = seed(&f).await;
        let deal = f.catalog.entity("crm", "deal").expect("deal");
        let id = f
            .reader
            .list(
                &deal,
                &ListQuery {
                    filter: Some(filter(json!({"account": acme}))),
                    ..Default::default()
                },
                &Access::everything(),
            )
            .await
            .expect("list")
            .records[0]
            .id;
        let record = f
            .reader
            .get(&deal, id, &Access::everything())
            .await
            .expect("get");
        assert_eq!(record.titles["account"], json!("Acme"));
        assert_eq!(record.values["amount"], json!("2000.10"));
        assert!(matches!(
            f.reader.get(&deal, 999_999, &Access::everything()).await,
            Err(RecordError::NotFound { .. })
        ));
    })
    .await;
}

#[tokio::test]
async fn filters_follow_one_link() {
    each_backend("link_paths", async |store| {
        let f = fixture(&store).await;
        seed(&f).await;
        let deal = f.catalog.entity("crm", "deal").expect("deal");
        let all = Access::everything();
        let east = f
            .reader
            .list(
                &deal,
                &ListQuery {
                    filter: Some(filter(json!({"account.region": "east"}))),
                    ..Default::default()
                },
                &all,
            )
            .await
            .expect("lists");
        assert_eq!(
            east.total,
            Total::Exact(6),
            "the even deals belong to Acme, in the east"
        );
        let west = f
            .reader
            .list(
                &deal,
                &ListQuery {
                    filter: Some(filter(json!({"account.region": {"in": ["west", "north"]}}))),
                    ..Default::default()
                },
                &all,
            )
            .await
            .expect("lists");
        assert_eq!(west.total, Total::Exact(0));
        let err = f
            .reader
            .list(
                &deal,
                &ListQuery {
                    filter: Some(filter(json!({"account.nope": 1}))),
                    ..Default::default()
                },
                &all,
            )
            .await
            .expect_err("unknown");
        assert!(matches!(err, RecordError::BadQuery(_)));
        let err = f
            .reader
            .list(
                &deal,
                &ListQuery {
                    filter: Some(filter(json!({"stage.region": "east"}))),
                    ..Default::default()
                },
                &all,
            )
            .await
            .expect_err("not a link");
        assert!(matches!(err, RecordError::BadQuery(_)));
    })
    .await;
}
