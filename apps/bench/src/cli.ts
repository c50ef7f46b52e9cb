/** The benchmark CLI (grows with each kernel family; see the bench issue). */
console.log('webinfer bench: no suites yet');
