export const handler = async (event) => ({ batchItemFailures: [] });
