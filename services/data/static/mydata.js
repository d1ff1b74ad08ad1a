// My data: filled next
