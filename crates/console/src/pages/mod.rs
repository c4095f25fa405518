//! The console's pages, rendered on the server (maud): every page reads completely without
//! JavaScript; `live.js` only swaps in the sections that server-sent events bring
//! ([`live`]). Forms that change something carry the session's CSRF token and are offered to
//! operators only; a viewer sees a read-only banner and no action.
//!
//! One module per page, named like it, and [`layout`] for what they share.

mod audit;
mod catalog;
mod dead_letters;
mod journey;
mod layout;
mod live;
mod login;
mod orders;
mod overview;
mod read_models;
mod stuck;

pub(crate) use audit::audit;
pub(crate) use catalog::{catalog, reprice, restock};
pub(crate) use dead_letters::{dead_letter, dead_letters, discard, redrive};
pub(crate) use journey::journey;
pub(crate) use live::events;
pub(crate) use login::{login, login_form, logout};
pub(crate) use orders::orders;
pub(crate) use overview::overview;
pub(crate) use read_models::{read_models, rebuild};
