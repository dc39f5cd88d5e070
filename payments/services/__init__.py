"""Every write on money: the balance ledger (`ledger`), credit grants (`grants`), payment methods and setup
intents (`methods`), refunds (`refunds`), applying provider money to invoices (`settlement`), payment
intents and the unknown-outcome resolver (`intents`), credit notes (`credit_notes`), when collection runs
(`schedule`), and the collection waterfall with dunning (`collection`).

Modules import only those before them in that list, so the package has no import cycles."""
