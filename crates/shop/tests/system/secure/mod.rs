//! The servers over TLS with credentials, by configuration only (SYSTEM.md §9): each server
//! refuses a client without the right credentials, and the saga runs with the services
//! configured for them. One file per server.

mod postgres;
