//! Tower/axum layers that read the typed `Route` from request extensions and apply one policy
//! each. Composed, in one commented order, in `app.rs`.

pub mod auth;
