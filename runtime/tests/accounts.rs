//! The first admin account on SQLite and PostgreSQL: created once, Argon2id-hashed.

mod common;

use common::{count, each_backend, model, texts};
use trellis_runtime::account::{AdminAccount, ensure_admin, verify_password};

#[tokio::test]
async fn the_admin_is_created_once_with_an_argon2id_hash() {
    each_backend("admin", async |store| {
        let m = model(&[("app.yaml", "name: empty\nlabel: Empty\n")]);
        trellis_runtime::serve::prepare(&store, &m, Some("s3cret pass"))
            .await
            .expect("prepares");
        assert_eq!(
            ensure_admin(&store, None).await.expect("second call"),
            AdminAccount::Existing
        );
        let hashes = texts(
            &store,
            "SELECT password_hash FROM trellis_users WHERE username = 'admin'",
        )
        .await;
        let hash = hashes[0].clone().expect("a hash");
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(verify_password("s3cret pass", &hash) && !verify_password("guess", &hash));
        assert_eq!(
            count(
                &store,
                "SELECT COUNT(*) FROM trellis_user_roles WHERE role = 'admin'"
            )
            .await,
            1
        );
    })
    .await;
}

#[tokio::test]
async fn without_a_chosen_password_one_is_generated() {
    each_backend("admin_generated", async |store| {
        let m = model(&[("app.yaml", "name: empty\nlabel: Empty\n")]);
        let AdminAccount::Generated(password) = trellis_runtime::serve::prepare(&store, &m, None)
            .await
            .expect("prepares")
        else {
            panic!("a password is generated");
        };
        let hash = texts(&store, "SELECT password_hash FROM trellis_users").await[0]
            .clone()
            .expect("a hash");
        assert!(verify_password(&password, &hash));
    })
    .await;
}
