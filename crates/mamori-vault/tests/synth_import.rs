//! The synthetic generator's output must always import cleanly: the demo depends on it.

mod common;

use common::*;
use mamori_core::access::Role;

#[tokio::test]
async fn ten_thousand_synthetic_people_import() {
    let f = Fixture::new().await;
    let (manager, _) = f.user("manager1", Role::Manager).await;
    match f.import(&manager, &people_csv(10_000, 2026)).await {
        Ok(r) => assert_eq!(r.rows, 10_000),
        Err(mamori_vault::VaultError::ImportRejected { errors, .. }) => panic!("{:#?}", &errors[..5.min(errors.len())]),
        Err(e) => panic!("{e}"),
    }
}
