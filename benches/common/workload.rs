//! The benchmark write mix on `users` and `orders`: transactions of single-row statements —
//! 40% user updates, 30% order inserts, 20% user inserts, 10% order deletes — each statement
//! changing exactly one row, new keys never colliding between writers.

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

/// Generates transactions of the benchmark mix.
pub struct Workload {
    rng: StdRng,
    users: u64,
    orders: u64,
    next_user: u64,
    next_order: u64,
    next_delete: u64,
}

impl Workload {
    /// `base` = (largest user id, largest order number) on the source; `slot` separates
    /// concurrent writers.
    pub fn new(seed: u64, users: u64, orders: u64, base: (u64, u64), slot: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            users,
            orders,
            next_user: base.0 + slot * 10_000_000,
            next_order: base.1 + slot * 10_000_000,
            next_delete: 1 + slot * 100_003 % orders,
        }
    }

    /// One statement of the mix.
    pub fn statement(&mut self) -> String {
        let r = self.rng.gen_range(0..100);
        if r < 40 {
            let id = self.rng.gen_range(1..=self.users);
            format!(
                "UPDATE users SET balance = balance + 1.25, seen = NOW(3), name = 'Updated {}' WHERE id = {id}",
                self.rng.gen::<u32>()
            )
        } else if r < 70 {
            self.next_order += 1;
            format!(
                "INSERT INTO orders (user_id, order_no, amount, qty, ordered, note) VALUES ({}, {}, {}.{:04}, {}, CURDATE(), 'bench order')",
                self.rng.gen_range(1..=self.users),
                self.next_order,
                self.rng.gen_range(1..100_000),
                self.rng.gen_range(0..10_000),
                self.rng.gen_range(0..65_535)
            )
        } else if r < 90 {
            self.next_user += 1;
            let n = self.next_user;
            format!(
                "INSERT INTO users VALUES ({n}, 'new{n}@example.com', 'New {n}', 0.00, 'active', 'beta', NOW(6), NOW(3), 'fresh', '{{\"new\": true}}')"
            )
        } else {
            // Each existing order is deleted at most once: exactly one row per statement.
            self.next_delete = (self.next_delete + 7919) % self.orders + 1;
            let k = self.next_delete;
            format!(
                "DELETE FROM orders WHERE user_id = {} AND order_no = {k}",
                1 + k % self.users
            )
        }
    }

    pub fn transaction(&mut self, statements: usize) -> String {
        let mut sql = String::from("BEGIN;");
        for _ in 0..statements {
            sql.push_str(&self.statement());
            sql.push(';');
        }
        sql.push_str("COMMIT");
        sql
    }
}

/// The mix's SQL in PostgreSQL's spelling (the reverse benchmark writes it on PostgreSQL).
pub fn for_postgres(sql: &str) -> String {
    sql.replace("NOW(3)", "now()")
        .replace("NOW(6)", "now()")
        .replace("CURDATE()", "CURRENT_DATE")
}
