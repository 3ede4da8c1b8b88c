//! Integration tests of the `vigil` binary. `hunt` and `rules` use fixtures
//! written here; `corpus` uses the shared corpus and skips without it.

mod corpus;
mod hunt;
mod rules;
mod serve;
mod util;
