//! The instances service on a real SQLite store and a real files directory.

// Test helpers panic on failure: that is how they report it.
#![allow(clippy::unwrap_used)]

use std::sync::Arc;

use hearth_core::{Doctype, InstanceId};
use hearth_instances::{
    Audience, CreateOptions, InstanceError, Instances, InstancesConfig, ModifyOptions, Resolution,
    ScryptCost, passphrase, token,
};
use hearth_store::{DocStore, GetOptions, mango::FindQuery};
use hearth_store_sqlite::{SqliteOptions, SqliteStore};
use serde_json::json;

struct Env {
    instances: Instances,
    store: Arc<dyn DocStore>,
    dir: tempfile::TempDir,
}

async fn env() -> Env {
    let dir = tempfile::tempdir().unwrap();
    let store: Arc<dyn DocStore> = Arc::new(
        SqliteStore::open(
            dir.path().join("db"),
            SqliteOptions {
                synchronous_full: false,
                ..Default::default()
            },
        )
        .unwrap(),
    );
    let config = InstancesConfig {
        fs_root: dir.path().join("files"),
        scrypt: ScryptCost::FAST,
    };
    let instances = Instances::open(store.clone(), config).await.unwrap();
    Env {
        instances,
        store,
        dir,
    }
}

fn opts(domain: &str) -> CreateOptions {
    CreateOptions {
        domain: domain.into(),
        ..Default::default()
    }
}

async fn dir_names(store: &Arc<dyn DocStore>, id: &InstanceId) -> Vec<String> {
    let q =
        FindQuery::parse(&json!({"selector": {"type": "directory"}, "sort": ["path"]})).unwrap();
    let r = store
        .find(id, &Doctype::new("io.cozy.files").unwrap(), &q)
        .await
        .unwrap();
    r.docs
        .iter()
        .map(|d| d["path"].as_str().unwrap().to_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn create_english_and_french_trees() {
    let e = env().await;
    let alice = e
        .instances
        .create(opts("Alice.Localhost:8080"))
        .await
        .unwrap();
    assert_eq!(alice.domain, "alice.localhost:8080");
    assert_eq!(alice.locale, "en");
    assert_eq!(alice.register_token_hex().unwrap().len(), 32);
    assert!(!alice.onboarding_finished);
    let paths = dir_names(&e.store, &alice.instance_id()).await;
    assert_eq!(
        paths,
        [
            "/",
            "/.cozy_trash",
            "/Administrative",
            "/Photos",
            "/Photos/Backed up from my mobile",
            "/Photos/Uploaded from Cozy Photos"
        ]
    );
    let root = e.dir.path().join("files/alice.localhost:8080");
    assert!(root.join("Photos/Uploaded from Cozy Photos").is_dir());
    assert!(root.join(".cozy_trash").is_dir());

    let bob = e
        .instances
        .create(CreateOptions {
            locale: Some("fr".into()),
            ..opts("bob.localhost")
        })
        .await
        .unwrap();
    let paths = dir_names(&e.store, &bob.instance_id()).await;
    assert!(paths.contains(&"/Administratif".to_owned()), "{paths:?}");
    let files = Doctype::new("io.cozy.files").unwrap();
    let trash = e
        .store
        .get(
            &bob.instance_id(),
            &files,
            "io.cozy.files.trash-dir",
            GetOptions::default(),
        )
        .await
        .unwrap();
    assert_eq!(trash["dir_id"], "io.cozy.files.root-dir");
    let settings = e
        .store
        .get(
            &bob.instance_id(),
            &Doctype::new("io.cozy.contacts").unwrap(),
            "x",
            GetOptions::default(),
        )
        .await;
    assert!(settings.is_err());
    assert_eq!(e.instances.count().await.unwrap(), 2);

    let carol = e
        .instances
        .create(CreateOptions {
            locale: Some("de".into()),
            ..opts("carol.localhost")
        })
        .await
        .unwrap();
    assert!(
        dir_names(&e.store, &carol.instance_id())
            .await
            .contains(&"/Administrative".to_owned()),
        "other locales fall back to English"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn domains_and_aliases_share_one_namespace() {
    let e = env().await;
    e.instances
        .create(CreateOptions {
            domain_aliases: vec!["a2.localhost".into()],
            ..opts("a.localhost")
        })
        .await
        .unwrap();
    for dup in [
        opts("a.localhost"),
        opts("A2.localhost"),
        CreateOptions {
            domain_aliases: vec!["a.localhost".into()],
            ..opts("b.localhost")
        },
    ] {
        assert!(matches!(
            e.instances.create(dup).await,
            Err(InstanceError::Exists)
        ));
    }
    // A failed creation leaves nothing behind: b can be created afterwards.
    e.instances.create(opts("b.localhost")).await.unwrap();
    assert!(matches!(
        e.instances.create(opts("a b")).await,
        Err(InstanceError::IllegalDomain { .. })
    ));
    let own_alias = CreateOptions {
        domain_aliases: vec!["c.localhost".into()],
        ..opts("c.localhost")
    };
    assert!(matches!(
        e.instances.create(own_alias).await,
        Err(InstanceError::Exists)
    ));
    assert_eq!(e.instances.count().await.unwrap(), 2);

    // The alias resolves; changing aliases releases the old one.
    let via_alias = e.instances.get_str("a2.localhost").await.unwrap();
    assert_eq!(via_alias.domain, "a.localhost");
    let m = ModifyOptions {
        domain_aliases: Some(vec!["b.localhost".into()]),
        ..Default::default()
    };
    assert!(
        matches!(
            e.instances.modify("a.localhost", m).await,
            Err(InstanceError::Exists)
        ),
        "alias of another instance"
    );
    let m = ModifyOptions {
        domain_aliases: Some(vec!["a3.localhost".into()]),
        ..Default::default()
    };
    e.instances.modify("a.localhost", m).await.unwrap();
    assert!(matches!(
        e.instances.get_str("a2.localhost").await,
        Err(InstanceError::NotFound)
    ));
    assert_eq!(
        e.instances.get_str("a3.localhost").await.unwrap().domain,
        "a.localhost"
    );
    e.instances.create(opts("a2.localhost")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn old_domain_resolves_as_moved() {
    let e = env().await;
    e.instances
        .create(CreateOptions {
            old_domain: Some("old.localhost".into()),
            ..opts("new.localhost")
        })
        .await
        .unwrap();
    assert!(matches!(
        e.instances.resolve_host("new.localhost").await.unwrap(),
        Resolution::Found(_)
    ));
    assert!(
        matches!(e.instances.resolve_host("OLD.localhost").await.unwrap(), Resolution::Moved(d) if d == "new.localhost")
    );
    assert!(matches!(
        e.instances.resolve_host("nobody.localhost").await.unwrap(),
        Resolution::Unknown
    ));
    assert!(matches!(
        e.instances.resolve_host("bad host").await.unwrap(),
        Resolution::Unknown
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn passphrase_onboards_and_verifies() {
    let e = env().await;
    let i = e
        .instances
        .create(CreateOptions {
            passphrase: Some("cozy".into()),
            kdf_iterations: 50_000,
            ..opts("p.localhost")
        })
        .await
        .unwrap();
    assert!(i.onboarding_finished);
    assert_eq!(i.password_defined, Some(true));
    assert!(i.register_token.is_none());
    let client = passphrase::client_hash("cozy", "me@p.localhost", 50_000);
    assert!(passphrase::verify(
        &client,
        i.passphrase_hash.as_deref().unwrap()
    ));
    assert!(matches!(
        e.instances
            .create(CreateOptions {
                kdf_iterations: 10,
                ..opts("q.localhost")
            })
            .await,
        Err(InstanceError::InvalidParameter {
            parameter: "KdfIterations",
            ..
        })
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn block_modify_and_tokens() {
    let e = env().await;
    e.instances.create(opts("a.localhost")).await.unwrap();
    e.instances.create(opts("b.localhost")).await.unwrap();
    let m = ModifyOptions {
        blocked: Some(true),
        blocking_reason: Some("PAYMENT_FAILED".into()),
        locale: Some("fr".into()),
        disk_quota: Some(Some(5_000_000)),
        ..Default::default()
    };
    let i = e.instances.modify("a.localhost", m).await.unwrap();
    assert!(i.blocked);
    assert_eq!(i.blocking_reason.as_deref(), Some("PAYMENT_FAILED"));
    let seen = e.instances.get_str("a.localhost").await.unwrap();
    assert!(seen.blocked, "the cache sees the change at once");
    assert_eq!(seen.disk_quota, Some(5_000_000));
    let i = e
        .instances
        .modify(
            "a.localhost",
            ModifyOptions {
                blocked: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert!(!i.blocked);
    assert_eq!(i.blocking_reason, None, "unblocking clears the reason");
    assert_eq!(i.locale, "fr");
    let i = e
        .instances
        .modify(
            "a.localhost",
            ModifyOptions {
                disk_quota: Some(None),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    assert_eq!(i.disk_quota, None);
    assert!(matches!(
        e.instances
            .modify(
                "a.localhost",
                ModifyOptions {
                    tos_signed: Some("nope".into()),
                    ..Default::default()
                }
            )
            .await,
        Err(InstanceError::InvalidParameter { .. })
    ));

    let t = e
        .instances
        .issue_token("a.localhost", Audience::Cli, "", "io.cozy.files", None)
        .await
        .unwrap();
    let a = e.instances.get_str("a.localhost").await.unwrap();
    let b = e.instances.get_str("b.localhost").await.unwrap();
    assert!(token::verify(&a, &t).is_ok());
    assert!(
        token::verify(&b, &t).is_err(),
        "a token of A is refused on B"
    );
    assert!(matches!(
        e.instances
            .modify("zzz.localhost", ModifyOptions::default())
            .await,
        Err(InstanceError::NotFound)
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn destroy_removes_everything_and_refuses_twice() {
    let e = env().await;
    let i = e
        .instances
        .create(CreateOptions {
            domain_aliases: vec!["d2.localhost".into()],
            ..opts("d.localhost")
        })
        .await
        .unwrap();
    let files = e.dir.path().join("files/d.localhost");
    assert!(files.is_dir());
    // A deletion flagged (say, by a crash midway) is refused until cleared.
    e.instances
        .modify(
            "d.localhost",
            ModifyOptions {
                deleting: Some(true),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    let err = e.instances.destroy("d.localhost").await.unwrap_err();
    assert!(matches!(err, InstanceError::DeletionInProgress { .. }));
    assert!(err.to_string().contains("--deleting=false"), "{err}");
    e.instances
        .modify(
            "d.localhost",
            ModifyOptions {
                deleting: Some(false),
                ..Default::default()
            },
        )
        .await
        .unwrap();
    e.instances.destroy("d.localhost").await.unwrap();
    assert!(!files.exists());
    assert!(
        !e.dir
            .path()
            .join(format!("db/{}.sqlite", i.prefix))
            .exists()
    );
    assert!(matches!(
        e.instances.get_str("d.localhost").await,
        Err(InstanceError::NotFound)
    ));
    assert!(matches!(
        e.instances.get_str("d2.localhost").await,
        Err(InstanceError::NotFound)
    ));
    assert_eq!(e.instances.count().await.unwrap(), 0);
    assert!(matches!(
        e.instances.destroy("d.localhost").await,
        Err(InstanceError::NotFound)
    ));
    // The domain is free again.
    e.instances.create(opts("d.localhost")).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oauth_codes_and_tokens() {
    use hearth_instances::oauth::{ClientMetadata, TokenError, pkce_challenge};
    let e = env().await;
    e.instances.create(opts("a.localhost")).await.unwrap();
    let meta = ClientMetadata {
        redirect_uris: vec!["http://localhost/cb".into()],
        client_name: "C".into(),
        software_id: "s".into(),
        ..Default::default()
    };
    let client = e
        .instances
        .register_client("a.localhost", meta)
        .await
        .unwrap()
        .unwrap();
    let (id, secret) = (
        client["client_id"].as_str().unwrap(),
        client["client_secret"].as_str().unwrap(),
    );
    let a = e.instances.get_str("a.localhost").await.unwrap();

    let code = e
        .instances
        .create_access_code("a.localhost", id, "io.cozy.files", None)
        .await
        .unwrap();
    assert_eq!(
        e.instances
            .exchange_code("a.localhost", id, "wrong", &code, None)
            .await
            .unwrap(),
        Err(TokenError("invalid client_secret"))
    );
    let tokens = e
        .instances
        .exchange_code("a.localhost", id, secret, &code, None)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(tokens.scope, "io.cozy.files");
    let claims = token::verify(&a, &tokens.access_token).unwrap();
    assert_eq!(
        (claims.audience(), claims.sub.as_str()),
        (Some(Audience::Access), id)
    );
    assert_eq!(
        e.instances
            .exchange_code("a.localhost", id, secret, &code, None)
            .await
            .unwrap(),
        Err(TokenError("invalid code")),
        "single use"
    );

    // PKCE.
    let code = e
        .instances
        .create_access_code(
            "a.localhost",
            id,
            "io.cozy.files",
            Some(&pkce_challenge("verifier")),
        )
        .await
        .unwrap();
    assert_eq!(
        e.instances
            .exchange_code("a.localhost", id, secret, &code, Some("other"))
            .await
            .unwrap(),
        Err(TokenError("invalid code_verifier"))
    );
    let code = e
        .instances
        .create_access_code(
            "a.localhost",
            id,
            "io.cozy.files",
            Some(&pkce_challenge("verifier")),
        )
        .await
        .unwrap();
    assert!(
        e.instances
            .exchange_code("a.localhost", id, secret, &code, Some("verifier"))
            .await
            .unwrap()
            .is_ok()
    );

    // Refresh; a deleted client can neither refresh nor use its tokens.
    let refresh = tokens.refresh_token.unwrap();
    let again = e
        .instances
        .refresh_tokens("a.localhost", id, secret, &refresh)
        .await
        .unwrap()
        .unwrap();
    assert!(again.refresh_token.is_none());
    assert_eq!(
        e.instances
            .refresh_tokens("a.localhost", id, secret, "garbage")
            .await
            .unwrap(),
        Err(TokenError("invalid refresh token"))
    );
    e.instances.delete_client("a.localhost", id).await.unwrap();
    assert_eq!(
        e.instances
            .refresh_tokens("a.localhost", id, secret, &refresh)
            .await
            .unwrap(),
        Err(TokenError("the client must be registered"))
    );
}
