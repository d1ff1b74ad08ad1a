// Data admin: filled next
