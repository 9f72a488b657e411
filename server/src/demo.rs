//! The demo: a buyer with a funded sentiment bounty, so a fresh
//! `sahel-server --demo` has work to hand out. Its files are compiled in,
//! so the binary runs from any directory. Loading is idempotent.

use sahel_protocol::Micros;
use sahel_protocol::api::{CreateProject, DepositRequest, Role};

use crate::accounts::{self, AuthUser, NewUser, Roles};
use crate::error::Error;
use crate::ledger;
use crate::projects::{self, NewProject, import};
use crate::state::AppState;

const BOUNTY: &str = include_str!("../../fixtures/demo/bounty.json");
const ITEMS: &str = include_str!("../../fixtures/demo/items.jsonl");

pub const BUYER_EMAIL: &str = "buyer@demo.sahel";
pub const BUYER_PASSWORD: &str = "demo-buyer-password";

fn err(e: Error) -> anyhow::Error {
    anyhow::anyhow!("{e}")
}

pub async fn load(state: &AppState) -> anyhow::Result<()> {
    if accounts::find_by_email(&state.db.conn, BUYER_EMAIL)
        .await
        .map_err(err)?
        .is_some()
    {
        tracing::info!(email = BUYER_EMAIL, "demo already loaded");
        return Ok(());
    }
    let roles = Roles::of(&[Role::Buyer]);
    let new = NewUser::new(
        BUYER_EMAIL.into(),
        BUYER_PASSWORD.into(),
        "Demo Buyer".into(),
        roles,
    )
    .map_err(err)?;
    let buyer = accounts::create_user(&state.db, new).await.map_err(err)?;
    let spec: CreateProject = serde_json::from_str(BOUNTY)?;
    let deposit = spec
        .budget
        .checked_add(Micros::from_tokens(100).unwrap_or_default())
        .unwrap_or(spec.budget);
    ledger::deposit(
        &state.db,
        DepositRequest {
            user_id: buyer.id,
            amount: deposit,
            idempotency_key: "demo-deposit".into(),
        },
    )
    .await
    .map_err(err)?;
    let caller = AuthUser {
        id: buyer.id,
        roles,
    };
    let p = projects::create(&state.db, &caller, NewProject::try_from(spec).map_err(err)?)
        .await
        .map_err(err)?;
    let report = import::import(
        &state.db,
        &caller,
        p.row.id,
        import::Format::Jsonl,
        false,
        ITEMS.as_bytes(),
    )
    .await
    .map_err(err)?;
    projects::fund(&state.db, &caller, p.row.id, "demo-fund")
        .await
        .map_err(err)?;
    tracing::info!(
        project = p.row.id,
        items = report.imported,
        buyer = BUYER_EMAIL,
        password = BUYER_PASSWORD,
        "demo bounty loaded and funded"
    );
    Ok(())
}
